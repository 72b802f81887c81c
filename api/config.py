"""The app's configuration defaults; server.py (or a test) overrides them through `create_app(config)`."""

from __future__ import annotations

from api.pages import SWAGGER_ASSETS
from core import __version__
from core.rules import TEXT_BODY_BYTES


class DefaultConfig:
    API_TITLE = "mflux-server"
    API_VERSION = __version__
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "/swagger"
    OPENAPI_SWAGGER_UI_URL = SWAGGER_ASSETS
    API_SPEC_OPTIONS = {
        "info": {
            "description": "Queue text-to-image tasks for one GPU and follow them: position, progress, forecast.",
            "license": {"name": "Apache-2.0"},
        }
    }
    MAX_CONTENT_LENGTH = TEXT_BODY_BYTES  # a prompt is a few kB; endpoints that take images allow more (api/bodies.py)
    JSON_SORT_KEYS = False
    MFLUX_CORS_ORIGINS = "*"  # as the original: its web UI may be opened from a file or another host
    MFLUX_API_KEY = None  # the single --api-key: an admin key
    MFLUX_API_KEYS = ()  # the named keys of --api-keys-file (core.keys.ApiKey)
    MFLUX_PUBLIC_URL = None  # the base of absolute links (--public-url); None: where the server listens
    MFLUX_MAX_HELD_REQUESTS = 12  # open event streams + blocking generation calls; server.py: --threads - 4
    MFLUX_ADMITTED_REQUESTS = 2  # requests running the app's Python at once (api/slots.py); 0: no gate
    MFLUX_SSE_KEEPALIVE_SECONDS = 15.0
