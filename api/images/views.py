"""/api/image: the finished image, as bytes or base64 text; /api/preview: the running task as it is now."""

from __future__ import annotations

import base64

from flask import Response
from flask.views import MethodView
from flask_smorest import abort

from api.context import caller, service
from api.errors import ErrorSchema
from api.images.schemas import ImageArgsSchema
from api.safe_methods import is_head
from api.smorest import ApiBlueprint
from api.tasks.schemas import TaskIdSchema

blp = ApiBlueprint("images", __name__, url_prefix="/api", description="Fetch finished images and previews.")

BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_CONTENT = {mimetype: BINARY for mimetype in ("image/jpeg", "image/png", "image/webp")} | {
    "text/plain": {"schema": {"type": "string", "format": "byte"}}
}
JPEG = {"image/jpeg": BINARY}


@blp.route("/image")
class ImageView(MethodView):
    @blp.arguments(ImageArgsSchema, location="query")
    @blp.response(200, content_type="image/jpeg", description="The image (or its base64 text).")
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown task, or it has no image (yet, or any more).")
    @blp.doc(responses={"200": {"content": IMAGE_CONTENT}})
    def get(self, args):
        """The encoded image; deleted once fetched unless delete=false (as in the original)."""
        delete = args["delete"] and not is_head()  # a HEAD: the headers a GET would send; the image stays
        data, image_format = service().image(args["task_id"], delete=delete, caller=caller())
        filename = f"{args['task_id']}.{image_format.extension}"
        headers = {"Cache-Control": "no-store", "Content-Disposition": f'inline; filename="{filename}"'}
        if args["base64"]:
            return Response(base64.b64encode(data), mimetype="text/plain", headers=headers)
        return Response(data, mimetype=image_format.mimetype, headers=headers)


@blp.route("/preview")
class Preview(MethodView):
    @blp.arguments(TaskIdSchema, location="query")
    @blp.response(200, content_type="image/jpeg")
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown task, previews are off, or none now.")
    @blp.doc(responses={"200": {"description": "The latest preview, at most 256 pixels a side.", "content": JPEG}})
    def get(self, args):
        """The running task's latest preview. Other query parameters (the `n` in event URLs) are ignored."""
        tasks = service()
        data = tasks.preview(args["task_id"], caller())
        if data is None:
            if not tasks.previews_enabled:
                abort(404, message="Previews are turned off on this server (--no-previews).")
            abort(404, message=f"Task {args['task_id']} has no preview: it is not running, or not far enough yet.")
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})
