"""Errors as OpenAI's API sends them: `{"error": {"message", "type", "param", "code"}}`.

OpenAI clients (the `openai` package, chat programs) read `error.message`, and retry some statuses unless told
not to (`x-should-retry: false`).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Response, jsonify, request
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

ERROR_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}
CODES = {401: "invalid_api_key", 404: "not_found", 429: "rate_limit_exceeded", 503: "engine_unavailable"}
# GenerationRequest fields by the names OpenAI's requests give them.
FIELD_NAMES = {
    "width": "size",
    "height": "size",
    "count": "n",
    "init_image": "image",
    "init_images": "image",
    "mask_image": "mask",
}


class OpenAIErrorDetailSchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True, metadata={"example": "invalid_request_error"})
    param = fields.String(required=True, allow_none=True, metadata={"description": "The offending field, if any."})
    code = fields.String(required=True, allow_none=True, metadata={"example": "invalid_value"})


class OpenAIErrorSchema(Schema):
    error = fields.Nested(OpenAIErrorDetailSchema, required=True)


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    error_type = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    response = jsonify({"error": {"message": message, "type": error_type, "param": param, "code": code}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


class OpenAIShape:
    prefix = "/v1"
    invalid_status = 400

    def error(self, status: int, message: str, *, field: str | None = None, headers: Mapping | None = None) -> Response:
        code = "invalid_value" if field else CODES.get(status)
        return openai_error(status, message, param=field, code=code, headers=headers)

    def field_name(self, name: str) -> str:
        base, dot, rest = name.partition(".")  # init_images.1: the second image
        return FIELD_NAMES.get(base, base) + (f"[{rest}]" if dot and base in ("init_images",) else "")

    def unrouted(self, error: HTTPException, headers: Mapping) -> Response:
        message = f"Invalid URL ({request.method} {request.path})." if error.code == 404 else error.description
        return openai_error(error.code or 404, message, headers=headers)
