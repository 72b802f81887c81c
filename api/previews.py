"""/api/preview: a small JPEG of the running task as it is now (the worker writes one every few steps)."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import abort

from api.blueprint import ApiBlueprint
from api.context import service
from api.schemas import TaskIdSchema

JPEG = {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}

blp = ApiBlueprint("previews", __name__, url_prefix="/api", description="Previews of running tasks.")


@blp.route("/preview")
class Preview(MethodView):
    @blp.arguments(TaskIdSchema, location="query")
    @blp.response(200, content_type="image/jpeg")
    @blp.alt_response(404, description="Unknown task, previews are off, or the task has no preview now.")
    @blp.doc(responses={"200": {"description": "The latest preview, at most 256 pixels a side.", "content": JPEG}})
    def get(self, args):
        """The running task's latest preview. Other query parameters (the `n` in event URLs) are ignored."""
        tasks = service()
        data = tasks.preview(args["task_id"])
        if data is None:
            if not tasks.settings.previews:
                abort(404, message="Previews are turned off on this server (--no-previews).")
            abort(404, message=f"Task {args['task_id']} has no preview: it is not running, or not far enough yet.")
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})
