"""/api/events: one task's life as Server-Sent Events (the events are described in api/events/stream.py)."""

from __future__ import annotations

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import abort

from api.context import caller, service
from api.events.stream import FINAL_EVENTS, TaskEvents, stream
from api.slots import NoFreeSlot, client_disconnected, held_requests
from api.smorest import ApiBlueprint
from api.tasks.schemas import TaskIdSchema

blp = ApiBlueprint("events", __name__, url_prefix="/api", description="Follow a task live (Server-Sent Events).")

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
        who = caller()  # the stream outlives the request context: who asks is taken now
        view = tasks.status(task_id, who)  # unknown (or another key's): 404 now, before any stream starts
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
            stream(tasks, follower, client_disconnected(), keepalive, who),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # and nginx: do not buffer it
        )
        response.call_on_close(slots.release)  # runs when the stream ends, however it ends
        return response
