"""How large a request body may be: a few kB of JSON, or — on the endpoints that take images — room for as many
images as the limits allow (core/rules.py `Limits.max_body_bytes`). Refused bodies get a 413 in the shape of the
API asked, like every other error.

A body with images is parsed in memory (JSON, base64, then the pictures), so a few of them at once would be
hundreds of MB: bodies beyond the text limit take one of a few slots while they are handled, and wait a little
for one, then get 503 with Retry-After. Text-only requests never wait for them.
"""

from __future__ import annotations

import threading

from flask import Flask, current_app, g, request

from api.context import service
from api.errors import error_response
from core.rules import TEXT_BODY_BYTES

LARGE_BODY_SLOTS = 2
SLOT_WAIT_SECONDS = 10.0
EXTENSION = "mflux_server.large_bodies"


def takes_images(view_class: type) -> type:
    """Marks a MethodView whose requests may carry images."""
    view_class.takes_images = True
    return view_class


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = threading.BoundedSemaphore(LARGE_BODY_SLOTS)
    app.before_request(_allow_images_where_taken)
    app.teardown_request(_release_slot)


def _allow_images_where_taken():
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(getattr(view, "view_class", None), "takes_images", False):
        return None
    request.max_content_length = service().limits.max_body_bytes
    if (request.content_length or 0) <= TEXT_BODY_BYTES or request.content_length > request.max_content_length:
        return None  # small, or refused with 413 when the view reads it
    if not current_app.extensions[EXTENSION].acquire(timeout=SLOT_WAIT_SECONDS):
        message = f"The server is already taking {LARGE_BODY_SLOTS} requests with images; try again shortly."
        return error_response(503, message, {"Retry-After": "5"})
    g.large_body_slot = True
    return None


def _release_slot(_error: BaseException | None) -> None:
    if g.pop("large_body_slot", False):
        current_app.extensions[EXTENSION].release()
