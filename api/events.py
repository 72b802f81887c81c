"""/api/events: one task's life as Server-Sent Events, so a browser follows it without polling.

Events, each with an `id:` that names the state it reports:
- `queued` {task_id, pos, wait_remaining}: on connecting, when the position changes, and when the forecast
  moves away from a plain countdown by more than a second (or 10 %); id `queued-<pos>`.
- `progress` {task_id, step, steps, wait_remaining}: when the task starts, and after every step; id
  `progress-<step>`.
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

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import abort

from api.blueprint import ApiBlueprint
from api.context import service
from api.schemas import TaskIdSchema
from api.slots import NoFreeSlot, client_disconnected, held_requests
from taskqueue.errors import TaskNotFound
from taskqueue.service import TaskService, TaskView
from taskqueue.tasks import TaskStatus

blp = ApiBlueprint("events", __name__, url_prefix="/api", description="Follow a task live (Server-Sent Events).")

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
        self._queued: tuple[int, float, float] | None = None  # position, forecast, when it was sent
        self._step: tuple[int, int] | None = None
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
        step = (progress.step, progress.steps) if progress else (0, task.params.steps)
        if step != self._step:
            self._step = step
            data = {"task_id": self.task_id, "step": step[0], "steps": step[1]}
            events.append(Event("progress", f"progress-{step[0]}", data | {"wait_remaining": _seconds(view)}))
        if view.previews > self._previews:
            self._previews = view.previews
            url = f"{self.preview_url}&n={view.previews}"  # a new URL per preview, so <img> and caches reload
            events.append(Event("preview", f"preview-{view.previews}", {"task_id": self.task_id, "url": url}))
        return events

    def _queued_event(self, view: TaskView, now: float) -> list[Event]:
        position, forecast = view.position or 0, view.wait_remaining
        if self._queued is not None:
            last_position, last_forecast, sent_at = self._queued
            expected = max(last_forecast - (now - sent_at), 0.0)  # what a client counting down shows now
            if position == last_position and abs(forecast - expected) <= max(1.0, 0.1 * expected):
                return []
        self._queued = (position, forecast, now)
        data = {"task_id": self.task_id, "pos": position, "wait_remaining": _seconds(view)}
        return [Event("queued", f"queued-{position}", data)]

    def _final(self, view: TaskView) -> Event:
        task = view.task
        name = FINAL_EVENTS[task.status]
        data: dict = {"task_id": self.task_id}
        if task.status is TaskStatus.DONE:
            data["image_url"] = self.image_url
        elif task.status is TaskStatus.FAILED:
            data["error"] = task.error
        return Event(name, name, data)


def _seconds(view: TaskView) -> float:
    return round(view.wait_remaining, 3)


def stream(
    tasks: TaskService,
    follower: TaskEvents,
    disconnected: Callable[[], bool],
    keepalive_seconds: float,
) -> Iterator[bytes]:
    """The event stream; waitress sends each yielded chunk at once (it flushes every write of a response)."""
    changes = tasks.scheduler.changes
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    last_write = time.monotonic()
    while True:
        version = changes.version  # read before the task: a change in between ends the wait below at once
        try:
            view = tasks.status(follower.task_id)
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
        changes.wait(version, min(wake, max(keepalive_seconds - (now - last_write), 0.05)))


EVENT_NAMES = ["queued", "progress", "preview", *FINAL_EVENTS.values()]
EVENT_STREAM = {
    "text/event-stream": {
        "schema": {
            "description": "Each event: its name, its id, and its data as one line of JSON.",
            "type": "object",
            "properties": {
                "event": {"type": "string", "enum": EVENT_NAMES},
                "id": {"type": "string", "example": "progress-3"},
                "data": {"type": "string", "example": '{"task_id":"3f2a9c1b0d4e5f60","step":3,"steps":4}'},
            },
            "required": ["event", "id", "data"],
        }
    }
}
LAST_EVENT_ID = {
    "in": "header",
    "name": "Last-Event-ID",
    "required": False,
    "schema": {"type": "string"},
    "description": "Sent by browsers when they reconnect: the id of the last event received.",
}


@blp.route("/events", parameters=[LAST_EVENT_ID])
class Events(MethodView):
    @blp.arguments(TaskIdSchema, location="query")
    @blp.response(200, content_type="text/event-stream")
    @blp.alt_response(204, description="Last-Event-ID is this task's final event: nothing more will come.")
    @blp.alt_response(404, description="No task with this task_id.")
    @blp.alt_response(503, description="Too many open streams; poll /api/status instead (see Retry-After).")
    @blp.doc(responses={"200": {"description": "The event stream (see above).", "content": EVENT_STREAM}})
    def get(self, args):
        """Server-Sent Events for one task: queued, progress, preview, then done, failed or cancelled.

        `queued` {task_id, pos, wait_remaining}; `progress` {task_id, step, steps, wait_remaining};
        `preview` {task_id, url}; `done` {task_id, image_url}; `failed` {task_id, error}; `cancelled` {task_id}.
        The stream ends after the final event. Each event has an id; on reconnecting, the current state comes
        first. With an API key, EventSource can pass it as `?api_key=`.
        """
        task_id = args["task_id"]
        tasks = service()
        view = tasks.status(task_id)  # unknown: 404 now, before any stream starts
        last_event_id = request.headers.get("Last-Event-ID", "").strip()
        if view.task.status.is_final and last_event_id == FINAL_EVENTS[view.task.status]:
            return Response(status=204)
        slots = held_requests()
        try:
            slots.acquire()
        except NoFreeSlot as error:
            abort(503, message=str(error), headers={"Retry-After": str(error.retry_after_seconds)})
        follower = TaskEvents(
            task_id, f"/api/image?task_id={task_id}", f"/api/preview?task_id={task_id}", last_event_id
        )
        keepalive = float(current_app.config["MFLUX_SSE_KEEPALIVE_SECONDS"])
        response = Response(
            stream(tasks, follower, client_disconnected(), keepalive),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # and nginx: do not buffer it
        )
        response.call_on_close(slots.release)  # runs when the stream ends, however it ends
        return response
