"""Every error is JSON: `{code, status, message, errors}`, and the message names the offending field."""

from __future__ import annotations

from http import HTTPStatus

from flask import Flask, jsonify
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from api.schemas import ErrorSchema
from taskqueue.errors import (
    EngineUnavailable,
    ImageNotAvailable,
    QueueError,
    QueueFull,
    StorageUnavailable,
    TaskNotFound,
)

# The one place that decides which status code a domain error becomes.
DOMAIN_STATUS: dict[type[QueueError], int] = {
    TaskNotFound: 404,
    ImageNotAvailable: 404,
    QueueFull: 429,
    EngineUnavailable: 503,
    StorageUnavailable: 503,
}


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

    for location, fields in errors.items():
        if location in ("json", "query", "querystring", "form") and isinstance(fields, dict):
            walk(fields, [])
        else:
            walk(fields, [location])
    return "; ".join(parts)


class JsonApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        payload, code, headers = super().handle_http_exception(error)
        # smorest drops the exception's own headers; 405 must keep `Allow` (RFC 9110), 413/416 theirs.
        own = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers = {**own, **(headers or {})}  # webargs passes headers=None
        if "message" not in payload:
            if "errors" in payload:
                payload["message"] = describe_validation_errors(payload["errors"])
            else:
                payload["message"] = error.description or error.name
        return payload, code, headers


def register_domain_errors(app: Flask) -> None:
    def handle(error: QueueError):
        status = DOMAIN_STATUS.get(type(error), 400)
        payload = {"code": status, "status": _reason(status), "message": str(error)}
        headers = {}
        if isinstance(error, ImageNotAvailable):
            payload["task_status"] = error.status
        if isinstance(error, QueueFull):
            headers["Retry-After"] = str(error.retry_after_seconds)
        return jsonify(payload), status, headers

    app.register_error_handler(QueueError, handle)


def _reason(status: int) -> str:
    return HTTPStatus(status).phrase
