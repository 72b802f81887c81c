"""What the OpenAI and AUTOMATIC1111 imitations share: errors in the imitated API's shape, documented as such.

Their clients parse errors the way the real APIs send them (OpenAI: `error.message`; A1111, a FastAPI app:
`detail`), so /v1 and /sdapi answer in those shapes, and the API document must say so rather than describe
our own `{code, status, message}` errors for them.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from flask import Flask, Response, jsonify, request
from flask_smorest import Api
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from api.blueprint import ApiBlueprint
from api.context import EXTENSION
from api.schemas import NO_NUL, NOT_BLANK_NO_NUL
from taskqueue.service import MAX_SEED

OPENAI_ERROR_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}
A1111_DEFAULT_SIDE = 512  # A1111's default width and height
COMMON_SIZES = ("256x256", "512x512", "768x768", "1024x1024", "1024x1536", "1536x1024", "1024x1792", "1792x1024")


class OpenAIErrorDetailSchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True, metadata={"example": "invalid_request_error"})
    param = fields.String(required=True, allow_none=True, metadata={"description": "The offending field, if any."})
    code = fields.String(required=True, allow_none=True, metadata={"example": "invalid_value"})


class OpenAIErrorSchema(Schema):
    error = fields.Nested(OpenAIErrorDetailSchema, required=True)


class A1111ErrorSchema(Schema):
    error = fields.String(metadata={"description": "The kind of error.", "example": "UnprocessableEntity"})
    detail = fields.String(required=True, metadata={"description": "What went wrong; names the field if one did."})
    body = fields.String()
    errors = fields.String()


class CompatBlueprint(ApiBlueprint):
    """A blueprint whose documented error responses (4xx, 5xx, default) have the shape `error_schema` gives."""

    def __init__(self, *args, error_schema: type[Schema], shape: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._error_schema = error_schema
        self._error_name = error_schema.__name__.removesuffix("Schema")
        self._shape = shape
        self._prepare_doc_cbks.append(self._document_errors)

    def _document_errors(self, doc: dict, doc_info: dict, *, spec, **kwargs) -> dict:
        if self._error_name not in spec.components.schemas:
            spec.components.schema(self._error_name, schema=self._error_schema)
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{self._error_name}"}}}
        responses = doc.get("responses", {})
        for status, response in list(responses.items()):
            if str(status) != "default" and int(status) < 400:
                continue
            description = response.get("description") if isinstance(response, dict) else None
            description = description or f"An error, in {self._shape}'s shape."
            responses[status] = {"description": description, "content": content}
        return doc


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error as OpenAI's API sends it: `{"error": {"message", "type", "param", "code"}}`."""
    error_type = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    response = jsonify({"error": {"message": message, "type": error_type, "param": param, "code": code}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def a1111_error(status: int, message: str, error: str | None = None) -> Response:
    """An error as AUTOMATIC1111's API middleware sends it: `{"error", "detail", "body", "errors"}`."""
    response = jsonify({"error": error or _reason(status), "detail": message, "body": "", "errors": message})
    response.status_code = status
    return response


def _reason(status: int) -> str:
    return HTTPStatus(status).phrase.replace(" ", "")


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def init_app(app: Flask, api: Api) -> None:
    """Unknown paths and wrong methods under /v1 and /sdapi answer in those APIs' shapes too (elsewhere: ours).

    Registered for the status codes, which Flask prefers to any blueprint's or smorest's catch-all handler.
    """

    def unrouted(error: HTTPException):
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}  # 405: Allow
        if under(request.path, "/v1"):
            message = f"Invalid URL ({request.method} {request.path})." if error.code == 404 else error.description
            return openai_error(error.code or 404, message, headers=headers)
        if under(request.path, "/sdapi"):
            response = a1111_error(error.code or 404, error.name)  # FastAPI says just "Not Found"
            response.headers.update(headers)
            return response
        return api.handle_http_exception(error)

    app.register_error_handler(404, unrouted)
    app.register_error_handler(405, unrouted)
    limit = app.config["MFLUX_LIMITS"]
    model = app.extensions[EXTENSION].info.model
    document_limits(api.spec.components.schemas, limit, app.config["MFLUX_MAX_IMAGES_PER_REQUEST"], model)


def document_limits(components: dict, limit: dict, cap: int, model: str) -> None:
    """Write the configured limits into the request schemas of the document, as api.schemas does for /api."""
    text = {"minLength": 1, "maxLength": limit["max_prompt_chars"], "pattern": NOT_BLANK_NO_NUL}
    images = components["ImageGeneration"]["properties"]
    images["prompt"].update(text)
    images["n"].update(minimum=1, maximum=cap)
    sides = range(limit["min_side"], limit["max_side"] + 1)
    sizes = [size for size in COMMON_SIZES if all(int(side) in sides for side in size.split("x"))]
    images["size"]["enum"] = ["auto", *sizes, None]
    images["size"]["description"] += (
        f" Any WIDTHxHEIGHT with sides from {limit['min_side']} to {limit['max_side']} is accepted; common ones listed."
    )
    openai_names = r"dall-e-[0-9]+|gpt-image-[A-Za-z0-9._-]+|chatgpt-image-[A-Za-z0-9._-]+"
    images["model"]["pattern"] = f"^({re.escape(model)}|{openai_names})$"
    txt2img = components["Txt2Img"]
    properties = txt2img["properties"]
    properties["prompt"].update(text)
    properties["negative_prompt"].update(maxLength=limit["max_prompt_chars"], pattern=NO_NUL)
    for side in ("width", "height"):
        properties[side].update(minimum=limit["min_side"], maximum=limit["max_side"], default=a1111_side(limit))
    properties["steps"].update(minimum=1, maximum=limit["max_steps"])
    properties["seed"].update(minimum=-1, maximum=MAX_SEED)
    for name in ("batch_size", "n_iter"):
        properties[name].update(minimum=1, maximum=cap)
    # batch_size × n_iter <= cap, said in JSON Schema: one branch per batch size.
    txt2img["anyOf"] = [
        {"properties": {"batch_size": {"maximum": size}, "n_iter": {"maximum": cap // size}}}
        for size in range(1, cap + 1)
    ]


def a1111_side(limit: dict) -> int:
    """A1111's default side (512), within this server's limits."""
    return max(limit["min_side"], min(A1111_DEFAULT_SIDE, limit["max_side"]))
