"""Access control: the optional API keys, and the browser origins allowed to call the API (CORS).

With keys configured (the single `--api-key` or `MFLUX_SERVER_API_KEY`, and/or the named keys of
`--api-keys-file`, core/keys.py), every request under /api, /v1 and /sdapi must present one; the pages (/, /ui/,
/swagger, /openapi.json) stay open so the web UI can load and ask for it. The key found becomes the request's
`Caller` (api/context.py): which key it is and its role. What that caller may see is not decided here but by
the service (core/rules.py `visible_owner`).
Accepted forms:
- `Authorization: Bearer <key>` (the web UI, OpenAI clients, curl);
- `Authorization: Basic base64(<any user>:<key>)` (AUTOMATIC1111 clients such as Open WebUI and SillyTavern
  only know A1111's `--api-auth user:password`: give them any user name and the key as the password);
- `?api_key=<key>` on GET /api/events, /api/image and /api/preview only, because EventSource and <img>
  cannot send headers.
Every presented key is compared with every configured one, in constant time and without stopping at a match;
keys are never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Flask, Response, current_app, request
from flask_smorest import Api

from api.errors import error_response, under
from core.keys import LEGACY_NAME, ApiKey, Role
from core.submissions import Caller

PROTECTED_PREFIXES = ("/api", "/v1", "/sdapi")
QUERY_KEY_PATHS = frozenset({"/api/events", "/api/image", "/api/preview"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mflux-server"'}


def init_app(app: Flask, api: Api) -> None:
    app.before_request(_require_key)
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "The server's --api-key, or a named key of its --api-keys-file, if it has any. A user "
            "key sees and manages its own tasks only (others' appear in the queue anonymised); an admin key all.",
        },
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
    if keys_in_use(app.config):
        api.spec.options["security"] = [{"bearerAuth": []}, {"apiKeyQuery": []}]


def configured_keys(config: Mapping[str, Any]) -> tuple[ApiKey, ...]:
    """The single --api-key (an admin key, named LEGACY_NAME) and the named keys of the keys file."""
    single = config.get("MFLUX_API_KEY")
    legacy = (ApiKey(LEGACY_NAME, single, Role.ADMIN),) if single else ()
    return legacy + tuple(config.get("MFLUX_API_KEYS") or ())


def keys_in_use(config: Mapping[str, Any]) -> bool:
    return bool(config.get("MFLUX_API_KEY") or config.get("MFLUX_API_KEYS"))


def _protected(path: str) -> bool:
    return any(under(path, prefix) for prefix in PROTECTED_PREFIXES)


def _require_key() -> Response | None:
    keys = configured_keys(current_app.config)
    if not keys or request.method == "OPTIONS" or not _protected(request.path):
        return None  # CORS preflights carry no credentials by design; flask-cors answers them
    presented = list(_presented_keys())
    found = _matching(presented, keys)
    if found is not None:
        request.mflux_caller = _caller_of(found)
        return None
    message = (
        "This server requires an API key: send 'Authorization: Bearer <key>'."
        if not presented
        else "The API key is not valid for this server."
    )
    return _unauthorized(message)


def _matching(presented: list[str], keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The key one of the candidates (at most three) is: every pair compared, in constant time each, without
    stopping early, so the time taken tells nothing of which key, or how much of one, matched."""
    found = None
    for candidate in presented:
        given = candidate.encode()
        for key in keys:
            if hmac.compare_digest(given, key.secret.encode()) and found is None:
                found = key
    return found


def _caller_of(key: ApiKey) -> Caller:
    if key.name == LEGACY_NAME:
        # One shared key identifies no one in particular, so its clients are told apart by address (per-client
        # caps, A1111's progress and interrupt); the key's digest is kept in the identity.
        digest = hashlib.sha256(key.secret.encode()).hexdigest()[:12]
        return Caller(client=f"key-{digest}@{request.remote_addr or ''}", admin=True, owner=LEGACY_NAME)
    # A named key is one client wherever it is used from: its caps and its tasks are the key's.
    return Caller(client=f"key:{key.name}", admin=key.admin, owner=key.name, max_waiting=key.max_waiting)


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


def exposure_warning(host: str, api_key: str | bool | None) -> str | None:
    """The warning to log when the server is reachable from other machines without a key, else None."""
    if api_key or is_loopback(host):
        return None
    return (
        f"listening on {host} without an API key: anyone who can reach this address can queue and cancel "
        "tasks; set --api-key (or MFLUX_SERVER_API_KEY), or listen on 127.0.0.1"
    )
