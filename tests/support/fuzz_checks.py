"""Checks of our own for the schemathesis run in tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import base64
import io
from urllib.parse import urlsplit

import schemathesis
from PIL import Image


def error_message(path: str, body: object) -> object:
    """An error's message: ours is in `message`. The compatibility APIs may instead put it where the APIs they
    imitate do, so that those APIs' clients understand it (OpenAI: `error.message`; AUTOMATIC1111, a FastAPI
    app: `detail`); errors raised before their views run (405, 413) come in ours."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("message"), str):
        return body["message"]
    if path.startswith("/v1/") and isinstance(body.get("error"), dict):
        return body["error"].get("message")
    if path.startswith("/sdapi/") and body.get("detail"):
        return body["detail"] if isinstance(body["detail"], str) else str(body["detail"])
    return None


@schemathesis.check
def error_is_json_with_a_message(ctx, response, case) -> bool | None:
    """Every 4xx/5xx is `application/json` with a non-empty message, and ours carry their status as `code`."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/json"):
        raise AssertionError(f"{response.status_code} answered {content_type!r}, not JSON: {response.text[:200]!r}")
    path = urlsplit(response.request.url).path
    body = response.json()
    message = error_message(path, body)
    if not isinstance(message, str) or not message.strip():
        raise AssertionError(f"{response.status_code} error body without a message: {response.text[:200]!r}")
    if path.startswith("/api/") and body.get("code") != response.status_code:
        raise AssertionError(f"error body says code {body.get('code')!r}, the response is {response.status_code}")
    return True


def _tiny_png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


PNG = _tiny_png()
IMAGE_FIELDS = {"init_image", "mask_image", "image", "mask"}  # a base64 image (or an OpenAI {image_url} object)
IMAGE_LISTS = {"init_images", "images"}


def _real_images(body: dict) -> dict:
    """Images as base64 are strings to a schema; whether they are pictures, no schema can say. Generated ones
    become a real (tiny) PNG, so that each request tests what it was generated for; the image checks themselves
    are tests/test_image_input.py's. A mask or a strength without an image to apply to is left out likewise."""
    body = dict(body)
    for name in IMAGE_FIELDS & body.keys():
        value = body[name]
        if isinstance(value, str) and value:
            body[name] = PNG
        elif isinstance(value, dict):
            body[name] = {**value, "image_url": PNG}
    for name in IMAGE_LISTS & body.keys():
        if isinstance(body[name], list):
            body[name] = [{**v, "image_url": PNG} if isinstance(v, dict) else PNG for v in body[name]]
    if not body.get("init_image") and not body.get("init_images"):
        body.pop("mask_image", None)
        body.pop("image_strength", None)
    return body


@schemathesis.hook
def map_case(ctx, case):
    """Leave `callback_url` out of every generated request. Whether one is accepted depends on what its host
    resolves to (public addresses only, tests/test_webhooks.py), which no schema can say; and an accepted one
    would have the server call out to wherever it points. Make generated images real pictures (_real_images)."""
    if isinstance(case.body, dict):
        body = {name: value for name, value in case.body.items() if name != "callback_url"}
        case.body = _real_images(body)
    return case
