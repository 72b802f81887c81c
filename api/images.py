"""/api/image: the finished image, as bytes or base64 text."""

from __future__ import annotations

import base64

from flask import Response
from flask.views import MethodView

from api.blueprint import ApiBlueprint
from api.context import service
from api.schemas import ErrorSchema, ImageArgsSchema

blp = ApiBlueprint("images", __name__, url_prefix="/api", description="Fetch finished images.")

BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_CONTENT = {mimetype: BINARY for mimetype in ("image/jpeg", "image/png", "image/webp")} | {
    "text/plain": {"schema": {"type": "string", "format": "byte"}}
}


@blp.route("/image")
class ImageView(MethodView):
    @blp.arguments(ImageArgsSchema, location="query")
    @blp.response(200, content_type="image/jpeg", description="The image (or its base64 text).")
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown task, or it has no image (yet, or any more).")
    @blp.doc(responses={"200": {"content": IMAGE_CONTENT}})
    def get(self, args):
        """The encoded image; deleted once fetched unless delete=false (as in the original)."""
        data, image_format = service().image(args["task_id"], delete=args["delete"])
        filename = f"{args['task_id']}.{image_format.extension}"
        headers = {"Cache-Control": "no-store", "Content-Disposition": f'inline; filename="{filename}"'}
        if args["base64"]:
            return Response(base64.b64encode(data), mimetype="text/plain", headers=headers)
        return Response(data, mimetype=image_format.mimetype, headers=headers)
