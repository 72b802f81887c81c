"""Checks of our own for the schemathesis run in tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from urllib.parse import urlsplit

import schemathesis


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
