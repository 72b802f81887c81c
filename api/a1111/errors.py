"""Errors as AUTOMATIC1111's API middleware sends them: `{"error", "detail", "body", "errors"}`.

A1111 is a FastAPI app; its clients (Open WebUI, SillyTavern, webuiapi) read `detail`.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Response, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from api.errors import reason

# GenerationRequest fields by the names A1111's requests give them.
FIELD_NAMES = {
    "guidance": "cfg_scale",
    "count": "batch_size",
    "model": "override_settings.sd_model_checkpoint",
    "init_image": "init_images",
    "mask_image": "mask",
    "image_strength": "denoising_strength",
}


class A1111ErrorSchema(Schema):
    error = fields.String(metadata={"description": "The kind of error.", "example": "UnprocessableEntity"})
    detail = fields.String(required=True, metadata={"description": "What went wrong; names the field if one did."})
    body = fields.String()
    errors = fields.String()


def a1111_error(status: int, message: str, error: str | None = None, headers: Mapping | None = None) -> Response:
    response = jsonify({"error": error or reason(status).replace(" ", ""), "detail": message, "body": "",
                        "errors": message})  # fmt: skip
    response.status_code = status
    response.headers.update(headers or {})
    return response


class A1111Shape:
    prefix = "/sdapi"
    invalid_status = 422

    def error(self, status: int, message: str, *, field: str | None = None, headers: Mapping | None = None) -> Response:
        return a1111_error(status, message, headers=headers)

    def field_name(self, name: str) -> str:
        base, dot, rest = name.partition(".")  # init_images.1: the second image
        return FIELD_NAMES.get(base, base) + (f".{rest}" if dot else "")

    def unrouted(self, error: HTTPException, headers: Mapping) -> Response:
        return a1111_error(error.code or 404, error.name, headers=headers)  # FastAPI says just "Not Found"
