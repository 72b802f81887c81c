"""Access control: the optional API key, and the browser origins allowed to call the API (CORS).

With a key configured (`--api-key` or `MFLUX_SERVER_API_KEY`), every request under /api, /v1 and /sdapi must
present it; the pages (/, /ui/, /swagger, /openapi.json) stay open so the web UI can load and ask for it.
Accepted forms:
- `Authorization: Bearer <key>` (the web UI, OpenAI clients, curl);
- `Authorization: Basic base64(<any user>:<key>)` (AUTOMATIC1111 clients such as Open WebUI and SillyTavern
  only know A1111's `--api-auth user:password`: give them any user name and the key as the password);
- `?api_key=<key>` on GET /api/events, /api/image and /api/preview only, because EventSource and <img>
  cannot send headers.
The key is compared in constant time, and never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterator

from flask import Flask, Response, current_app, request
from flask_smorest import Api

from api.errors import error_response, under

PROTECTED_PREFIXES = ("/api", "/v1", "/sdapi")
QUERY_KEY_PATHS = frozenset({"/api/events", "/api/image", "/api/preview"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mflux-server"'}


def init_app(app: Flask, api: Api) -> None:
    app.before_request(_require_key)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "The server's --api-key, if it has one."}
    )
    api.spec.components.security_scheme(
        "apiKeyQuery",
        {
            "type": "apiKey",
            "in": "query",
            "name": "api_key",
            "description": "Only on GET /api/events, /api/image and /api/preview (EventSource and <img>).",
        },
    )
    if app.config.get("MFLUX_API_KEY"):
        api.spec.options["security"] = [{"bearerAuth": []}, {"apiKeyQuery": []}]


def _protected(path: str) -> bool:
    return any(under(path, prefix) for prefix in PROTECTED_PREFIXES)


def _require_key() -> Response | None:
    key = current_app.config.get("MFLUX_API_KEY")
    if not key or request.method == "OPTIONS" or not _protected(request.path):
        return None  # CORS preflights carry no credentials by design; flask-cors answers them
    presented = list(_presented_keys())
    expected = key.encode()
    # Compare against every candidate (at most three), without stopping early, in constant time each.
    matches = [hmac.compare_digest(candidate.encode(), expected) for candidate in presented]
    if any(matches):
        # One shared key identifies no one in particular, so clients are still told apart by address;
        # the key's digest is kept in the identity so per-key identities can come later without a change here.
        digest = hashlib.sha256(expected).hexdigest()[:12]
        request.mflux_client = f"key-{digest}@{request.remote_addr or ''}"
        return None
    message = (
        "This server requires an API key: send 'Authorization: Bearer <key>'."
        if not presented
        else "The API key is not valid for this server."
    )
    return _unauthorized(message)


def _presented_keys() -> Iterator[str]:
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        yield value
    elif scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, colon, password = decoded.partition(":")
        if colon and password:
            yield password
        elif decoded:
            yield user  # only the key, without "user:"
    if request.method == "GET" and request.path in QUERY_KEY_PATHS and request.args.get("api_key"):
        yield request.args["api_key"]


def _unauthorized(message: str) -> Response:
    return error_response(401, message, CHALLENGE)


def parse_origins(value: str | list[str] | tuple[str, ...]) -> str | list[str]:
    """`--cors-origins` text ("*", or origins separated by spaces or commas) as flask-cors wants it."""
    if isinstance(value, (list, tuple)):
        return list(value)
    origins = [origin for origin in re.split(r"[\s,]+", value.strip()) if origin]
    if not origins or "*" in origins:
        return "*"
    return origins


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may well resolve to a public address


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to log when the server is reachable from other machines without a key, else None."""
    if api_key or is_loopback(host):
        return None
    return (
        f"listening on {host} without an API key: anyone who can reach this address can queue and cancel "
        "tasks; set --api-key (or MFLUX_SERVER_API_KEY), or listen on 127.0.0.1"
    )
