"""Errors as JSON, in the shape of the API asked.

Our own API answers `{code, status, message, errors}`, with a `message` that names the offending field. The
imitated APIs (OpenAI, AUTOMATIC1111) register their own `ErrorShape` for their path prefix, so that whatever
answers an error there (a view, auth, an unknown path, a wrong method) answers it in that API's shape.
Domain errors (core/errors.py) become one status code each, decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Protocol

from flask import Flask, Response, current_app, jsonify, request
from flask_smorest.error_handler import ErrorSchema as SmorestErrorSchema
from marshmallow import fields
from werkzeug.exceptions import HTTPException

from core.errors import (
    EngineUnavailable,
    ImageNotAvailable,
    InvalidRequest,
    NotPermitted,
    QueueError,
    QueueFull,
    StorageUnavailable,
    TaskNotFound,
)
from core.tasks import TaskStatus

SHAPES = "mflux_server.error_shapes"

# The one place that decides which status code a domain error becomes.
DOMAIN_STATUS: dict[type[QueueError], int] = {
    InvalidRequest: 422,
    TaskNotFound: 404,
    ImageNotAvailable: 404,
    QueueFull: 429,
    EngineUnavailable: 503,
    StorageUnavailable: 503,
    NotPermitted: 403,
}


def domain_status(error: QueueError) -> int:
    return DOMAIN_STATUS.get(type(error), 400)


def domain_headers(error: QueueError) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after_seconds)} if isinstance(error, QueueFull) else {}


class ErrorSchema(SmorestErrorSchema):
    """Every error body of /api; documented so that clients (and the fuzzer) can rely on its shape."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    status = fields.String(required=True, metadata={"description": "The HTTP reason phrase."})
    message = fields.String(required=True, metadata={"description": "What went wrong; names the field if one did."})
    task_status = fields.String(
        metadata={"enum": [s.value for s in TaskStatus], "description": "/api/image: why there is no image."}
    )


class ErrorShape(Protocol):
    """How one API spells its errors."""

    prefix: str  # the paths it owns
    invalid_status: int  # the status it answers invalid parameters with

    def error(self, status: int, message: str, *, field: str | None = None, headers: Mapping | None = None) -> Response:
        """An error response; `field` is the offending field in this API's own names, if one is."""

    def field_name(self, name: str) -> str:
        """This API's name for a GenerationRequest field (or "count", the number of images asked for)."""

    def unrouted(self, error: HTTPException, headers: Mapping) -> Response:
        """The answer to an unknown path or a wrong method under `prefix`."""


def describe_validation_errors(errors: dict) -> str:
    """`{"json": {"width": ["Must be…"]}}` → `"width: Must be…"`, so the message alone tells what to fix."""
    parts: list[str] = []

    def walk(node: object, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, [*path, str(key)])
        elif isinstance(node, list) and all(isinstance(item, str) for item in node):
            name = ".".join(path) or "request"
            parts.append(f"{name}: {' '.join(node)}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, [*path, str(index)])
        else:
            parts.append(f"{'.'.join(path) or 'request'}: {node}")

    for location, problems in errors.items():
        if location in ("json", "query", "querystring", "form") and isinstance(problems, dict):
            walk(problems, [])
        else:
            walk(problems, [location])
    return "; ".join(parts)


def reason(status: int) -> str:
    return HTTPStatus(status).phrase


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def register_shape(app: Flask, shape: ErrorShape) -> None:
    app.extensions.setdefault(SHAPES, []).append(shape)


def shape_for(path: str) -> ErrorShape | None:
    """The imitated API that owns `path`, or None for our own."""
    return next((s for s in current_app.extensions.get(SHAPES, ()) if under(path, s.prefix)), None)


def own_error(status: int, message: str, headers: Mapping | None = None, **extra: object) -> Response:
    response = jsonify({"code": status, "status": reason(status), "message": message, **extra})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def error_response(status: int, message: str, headers: Mapping | None = None) -> Response:
    """An error in the shape of the API the current request is for."""
    shape = shape_for(request.path)
    if shape is None:
        return own_error(status, message, headers)
    return shape.error(status, message, headers=headers)


def invalid_request_response(error: InvalidRequest, shape: ErrorShape | None) -> Response:
    """The problems of a request, named in the asking API's own field names."""
    if shape is None:
        errors = {"json": error.problems}
        return own_error(422, str(error), errors=errors)
    named = {shape.field_name(name): messages for name, messages in error.problems.items()}
    message = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in named.items())
    return shape.error(shape.invalid_status, message, field=next(iter(named), None))


def init_app(app: Flask, api) -> None:
    """Domain errors anywhere, and unrouted paths and wrong methods, answered in the asking API's shape.

    Registered for the status codes, which Flask prefers to any blueprint's or smorest's catch-all handler.
    """

    def domain_error(error: QueueError) -> Response:
        shape = shape_for(request.path)
        if isinstance(error, InvalidRequest):
            return invalid_request_response(error, shape)
        status, headers = domain_status(error), domain_headers(error)
        if shape is not None:
            return shape.error(status, str(error), headers=headers)
        extra = {"task_status": error.status} if isinstance(error, ImageNotAvailable) else {}
        return own_error(status, str(error), headers, **extra)

    def unrouted(error: HTTPException):
        shape = shape_for(request.path)
        if shape is None:
            return api.handle_http_exception(error)
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}  # 405: Allow
        return shape.unrouted(error, headers)

    app.register_error_handler(QueueError, domain_error)
    app.register_error_handler(404, unrouted)
    app.register_error_handler(405, unrouted)
