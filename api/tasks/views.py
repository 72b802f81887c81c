"""/api/generate, /api/status, /api/tasks, /api/cancel, /api/clear: the queue, as the original server had it."""

from __future__ import annotations

from flask import jsonify
from flask.views import MethodView

from api.bodies import takes_images
from api.context import caller, service
from api.errors import ErrorSchema
from api.safe_methods import acts_on_get
from api.smorest import ApiBlueprint
from api.tasks.presenters import status_of, submission_of, task_of
from api.tasks.schemas import (
    CancelResponseSchema,
    ClearResponseSchema,
    GenerateRequestSchema,
    GenerateResponseSchema,
    StatusSchema,
    TaskIdSchema,
    TaskListArgsSchema,
    TaskSchema,
)
from core.tasks import TaskStatus

blp = ApiBlueprint("tasks", __name__, url_prefix="/api", description="Queue image generation tasks and follow them.")

ERRORS = {404: "No task with this task_id.", 422: "Invalid parameters; the message names the field."}


@blp.route("/generate")
@takes_images
class Generate(MethodView):
    @blp.arguments(GenerateRequestSchema())  # instances: a class would be instantiated per request
    @blp.response(200, GenerateResponseSchema)
    @blp.alt_response(413, schema=ErrorSchema, description="The request body is larger than the server accepts.")
    @blp.alt_response(422, schema=ErrorSchema, description=ERRORS[422])
    @blp.alt_response(
        429,
        schema=ErrorSchema,
        description="Too many waiting tasks; see Retry-After.",
        headers={"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    )
    @blp.alt_response(503, schema=ErrorSchema, description="The engine could not be loaded.")
    def post(self, generation):
        """Queue one image; answers at once with its task id and the forecast."""
        return submission_of(service().submit(generation, caller()))


ENDED_WITHOUT_IMAGE = 410  # failed or cancelled: non-2xx, so that the original's clients stop polling


@blp.route("/status")
class Status(MethodView):
    @blp.arguments(TaskIdSchema(), location="query")
    @blp.response(200, StatusSchema)
    @blp.alt_response(
        410,
        schema=StatusSchema,
        description="The task failed or was cancelled: it will have no image (`status` and `error` say which).",
    )
    @blp.alt_response(404, schema=ErrorSchema, description=ERRORS[404])
    def get(self, args):
        """Where a task stands: status, queue position, seconds remaining, step progress, error.

        A failed or cancelled task answers 410 (with the same body): the original server's clients poll until
        "done" and treat any 200 as "not yet", so a 200 would keep them polling forever."""
        view = service().status(args["task_id"], caller())
        return status_of(view), status_code(view)


def status_code(view) -> int:
    """200 while a task is on its way or done; 410 once it has ended without an image."""
    return ENDED_WITHOUT_IMAGE if view.task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) else 200


@blp.route("/tasks")
class Tasks(MethodView):
    @blp.arguments(TaskListArgsSchema(), location="query")
    @blp.response(200, TaskSchema(many=True), headers={"X-Total-Count": {"schema": {"type": "integer"}}})
    def get(self, args):
        """Every task in queue order: running, waiting, then finished ones whose image is not fetched yet.

        To a user key (`--api-keys-file`): its own tasks, and other keys' running and waiting ones as anonymous
        entries (`anonymous: true`: position, model, size, steps, time left, status; no id, prompt or seed).

        A plain JSON array, as the original server answered; page with `limit` and `offset`, the total is in
        the `X-Total-Count` header.
        """
        statuses = tuple(TaskStatus(s) for s in args["status"]) if args["status"] else tuple(TaskStatus)
        views, total = service().listed(statuses, args["limit"], args["offset"], caller())
        # Returned as a response, so flask-smorest does not dump it again through TaskSchema: for a page of
        # tasks that re-serialization cost more than the rest of the request together. task_of already gives
        # the documented shape (tests/test_hot_paths.py checks TaskSchema would dump it unchanged).
        response = jsonify([task_of(v) for v in views])
        response.headers["X-Total-Count"] = str(total)
        return response


@blp.route("/cancel")
@acts_on_get
class Cancel(MethodView):
    @blp.arguments(TaskIdSchema(), location="query")
    @blp.response(200, CancelResponseSchema)
    @blp.alt_response(404, schema=ErrorSchema, description=ERRORS[404])
    def get(self, args):
        """Cancel a waiting task, or stop a running one at its next step."""
        return _cancel(args["task_id"])

    @blp.arguments(TaskIdSchema(), location="query")
    @blp.response(200, CancelResponseSchema)
    @blp.alt_response(404, schema=ErrorSchema, description=ERRORS[404])
    def delete(self, args):
        """Same as GET."""
        return _cancel(args["task_id"])


def _cancel(task_id: str) -> dict:
    who = caller()
    before = service().cancel(task_id, who)
    now = service().task(task_id, who)
    return {
        "task_id": task_id,
        "status": now.status.value,
        "previous_status": before.status.value,
        "cancelled": not before.status.is_final,
    }


@blp.route("/clear")
@acts_on_get
class Clear(MethodView):
    @blp.response(200, ClearResponseSchema)
    def get(self):
        """Cancel every waiting and running task (a user key's: its own)."""
        return _clear()

    @blp.response(200, ClearResponseSchema)
    def delete(self):
        """Same as GET."""
        return _clear()


def _clear() -> dict:
    cancelled = service().clear(caller())
    return {"cancelled": len(cancelled), "task_ids": [t.id for t in cancelled]}
