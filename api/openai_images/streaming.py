"""`stream: true` on /v1/images/generations and /v1/images/edits: OpenAI's image events over Server-Sent Events.

Per image, in order: up to `partial_images` `…partial_image` events, drawn from the running task's previews as
its steps pass evenly spaced marks (a task with fewer steps or no previews sends fewer, which OpenAI allows:
"the final image may be sent before the full number of partial images"), then one `…completed` event with the
image. The `openai` package picks each event's type from the JSON `type` field alone; keep-alives are comment
lines, since an event without JSON data would raise in the client. A failed or cancelled image ends the stream
with an error event, which the package raises as `openai.APIError`. A client that hangs up cancels the images
not made yet, as for the blocking call.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from core.errors import TaskNotFound
from core.tasks import TaskStatus
from taskqueue.service import TaskService, TaskView

SAMPLE_SECONDS = 0.25  # steps are in shared memory, not on the change feed: look this often while running
KEEPALIVE_SECONDS = 15.0
USAGE = {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}, "output_tokens": 0,
         "total_tokens": 0}  # fmt: skip


@dataclass(frozen=True)
class StreamRequest:
    kind: str  # "image_generation" or "image_edit": the prefix of the event types
    partial_images: int
    size: str  # as asked ("auto" or "WxH")
    quality: str
    background: str
    output_format: str  # png, jpeg or webp


def events(
    tasks: TaskService, task_ids: Sequence[str], wanted: StreamRequest, disconnected: Callable[[], bool]
) -> Iterator[bytes]:
    last_write = time.monotonic()
    for position, task_id in enumerate(task_ids):
        sent = 0
        while True:
            version = tasks.change_version  # before reading: a change in between ends the wait at once
            try:
                view = tasks.status(task_id)
            except TaskNotFound:
                yield _error("The image was forgotten before it was sent.", "not_found")
                return
            if view.task.status.is_final:
                break
            if disconnected():
                _cancel(tasks, task_ids[position:])
                return
            if sent < wanted.partial_images and _passed_mark(view, sent, wanted.partial_images):
                preview = tasks.preview(task_id)
                if preview is not None:
                    yield _event(wanted, "partial_image", preview, "jpeg", partial_image_index=sent)
                    sent, last_write = sent + 1, time.monotonic()
                    continue
            if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                yield b": keepalive\n\n"
                last_write = time.monotonic()
            wake = SAMPLE_SECONDS if view.task.status is TaskStatus.RUNNING else 1.0
            tasks.wait_for_change(version, wake)
        task = view.task
        if task.status is not TaskStatus.DONE:
            _cancel(tasks, task_ids[position + 1 :])
            if task.status is TaskStatus.FAILED:
                yield _error(f"Image generation failed: {task.error}", "generation_failed")
            else:
                yield _error("The image generation was cancelled on the server before it finished.", "cancelled")
            return
        image, image_format = tasks.image(task_id, delete=True)
        yield _event(wanted, "completed", image, image_format.value.lower(), usage=USAGE)
        last_write = time.monotonic()


def _passed_mark(view: TaskView, sent: int, wanted: int) -> bool:
    """Partial k (0-based) of n is due once (k + 1) / (n + 1) of the steps are done."""
    progress = view.progress
    if progress is None or not progress.steps or not view.previews:
        return False
    return progress.step / progress.steps >= (sent + 1) / (wanted + 1)


def _event(wanted: StreamRequest, suffix: str, image: bytes, image_format: str, **extra: object) -> bytes:
    data = {
        "type": f"{wanted.kind}.{suffix}",
        "b64_json": base64.b64encode(image).decode("ascii"),
        "created_at": int(time.time()),
        "size": wanted.size,
        "quality": wanted.quality,
        "background": wanted.background,
        "output_format": image_format,
        **extra,
    }
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _error(message: str, code: str) -> bytes:
    error = {"type": "server_error", "code": code, "message": message, "param": None}
    return f"event: error\ndata: {json.dumps({'type': 'error', 'error': error})}\n\n".encode()


def _cancel(tasks: TaskService, task_ids: Sequence[str]) -> None:
    for task_id in task_ids:
        try:
            tasks.cancel(task_id)
        except TaskNotFound:
            pass
