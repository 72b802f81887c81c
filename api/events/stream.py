"""/api/events: one task's life as Server-Sent Events, so a browser follows it without polling.

Events, each with an `id:` that names the state it reports:
- `queued` {task_id, pos, wait_remaining, model, loading_model}: on connecting, when the position or the model
  to load before it changes, and when the forecast moves away from a plain countdown by more than a second (or
  10 %); id `queued-<pos>`.
- `progress` {task_id, step, steps, wait_remaining, model, loading_model}: when the task starts, while its model
  loads (`loading_model` set) and once it has loaded, and after every step; id `progress-<step>`.
- `preview` {task_id, url}: when the running task has a new preview; id `preview-<count>`.
- `done` {task_id, image_url}, `failed` {task_id, error}, `cancelled` {task_id}: the last event; the stream
  ends after it. Ids `done`, `failed`, `cancelled`.
Comment lines (`: keepalive`) keep idle connections open through proxies.

Reconnecting is safe: a client gets the current state first. `Last-Event-ID` is honoured where it helps: a
preview the client already has is not announced again, and a client that saw the final event (browsers
reconnect after every stream end unless the page calls `close()`) gets 204, which tells EventSource to stop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from core.errors import TaskNotFound
from core.submissions import Caller
from core.tasks import TaskStatus
from taskqueue.service import ANYONE, TaskService, TaskView

RETRY_MILLISECONDS = 3000  # how soon a browser reconnects after a dropped connection
SAMPLE_SECONDS = 0.25  # a running task's steps live in shared memory, not on the change feed: look 4 times a second
WAKE_SECONDS = 1.0  # a waiting task changes only with the feed, but wake anyway to notice a client that hung up
FINAL_EVENTS = {TaskStatus.DONE: "done", TaskStatus.FAILED: "failed", TaskStatus.CANCELLED: "cancelled"}


@dataclass(frozen=True)
class Event:
    name: str
    id: str
    data: dict

    def encode(self) -> bytes:
        payload = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.name}\ndata: {payload}\n\n".encode()


class TaskEvents:
    """Turns successive views of one task into the events its client has not been told yet."""

    def __init__(self, task_id: str, image_url: str, preview_url: str, last_event_id: str = "") -> None:
        self.task_id = task_id
        self.image_url = image_url
        self.preview_url = preview_url
        self._queued: tuple[int, str | None, float, float] | None = None  # position, load, forecast, sent at
        self._step: tuple[int, int, str | None] | None = None
        kind, _, number = last_event_id.partition("-")
        self._previews = int(number) if kind == "preview" and number.isdigit() else 0

    def events(self, view: TaskView, now: float) -> list[Event]:
        task = view.task
        if task.status.is_final:
            return [self._final(view)]
        if task.status is TaskStatus.WAITING:
            return self._queued_event(view, now)
        events: list[Event] = []
        progress = view.progress
        step = (progress.step, progress.steps) if progress else (0, task.params.steps_run)
        if (*step, view.loading) != self._step:
            self._step = (*step, view.loading)
            data = {"task_id": self.task_id, "step": step[0], "steps": step[1], "wait_remaining": _seconds(view)}
            events.append(Event("progress", f"progress-{step[0]}", data | _model(view)))
        if view.previews > self._previews:
            self._previews = view.previews
            url = f"{self.preview_url}&n={view.previews}"  # a new URL per preview, so <img> and caches reload
            events.append(Event("preview", f"preview-{view.previews}", {"task_id": self.task_id, "url": url}))
        return events

    def _queued_event(self, view: TaskView, now: float) -> list[Event]:
        position, forecast = view.position or 0, view.wait_remaining
        if self._queued is not None:
            last_position, last_loading, last_forecast, sent_at = self._queued
            expected = max(last_forecast - (now - sent_at), 0.0)  # what a client counting down shows now
            same = position == last_position and view.loading == last_loading
            if same and abs(forecast - expected) <= max(1.0, 0.1 * expected):
                return []
        self._queued = (position, view.loading, forecast, now)
        data = {"task_id": self.task_id, "pos": position, "wait_remaining": _seconds(view)}
        return [Event("queued", f"queued-{position}", data | _model(view))]

    def _final(self, view: TaskView) -> Event:
        task = view.task
        name = FINAL_EVENTS[task.status]
        data: dict = {"task_id": self.task_id}
        if task.status is TaskStatus.DONE:
            data["image_url"] = self.image_url
        elif task.status is TaskStatus.FAILED:
            data["error"] = task.error
        return Event(name, name, data)


def _model(view: TaskView) -> dict:
    """The model it runs on, and the one loaded before it runs (null when none is)."""
    return {"model": view.task.variant.key, "loading_model": view.loading}


def _seconds(view: TaskView) -> float:
    return round(view.wait_remaining, 3)


def stream(
    tasks: TaskService,
    follower: TaskEvents,
    disconnected: Callable[[], bool],
    keepalive_seconds: float,
    caller: Caller = ANYONE,
) -> Iterator[bytes]:
    """The event stream; waitress sends each yielded chunk at once (it flushes every write of a response)."""
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    last_write = time.monotonic()
    while True:
        version = tasks.change_version  # read before the task: a change in between ends the wait below at once
        try:
            view = tasks.status(follower.task_id, caller)
        except TaskNotFound:
            return  # forgotten (past retention): nothing more will happen to it
        now = time.monotonic()
        for event in follower.events(view, now):
            yield event.encode()
            last_write = now
        if view.task.status.is_final or disconnected():
            return
        if now - last_write >= keepalive_seconds:
            yield b": keepalive\n\n"
            last_write = now
        wake = SAMPLE_SECONDS if view.task.status is TaskStatus.RUNNING else WAKE_SECONDS
        tasks.wait_for_change(version, min(wake, max(keepalive_seconds - (now - last_write), 0.05)))
