"""Query schemas of /api/image and /api/preview."""

from __future__ import annotations

from marshmallow import fields

from api.tasks.schemas import TaskIdSchema


class ImageArgsSchema(TaskIdSchema):
    base64 = fields.Boolean(load_default=False, metadata={"description": "Answer with base64 text, not bytes."})
    delete = fields.Boolean(load_default=True, metadata={"description": "Forget the image once fetched (default)."})
