"""The HTTP API: a Flask app that translates requests into calls on the task service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_cors import CORS

from api import a1111, auth, compat, events, images, metrics, openai, pages, previews, slots, system, tasks
from api.context import EXTENSION
from api.errors import JsonApi, register_domain_errors
from api.fast_status import StatusFastPath
from api.schemas import document_limits
from taskqueue.service import TaskService

__version__ = "0.1.0"


class DefaultConfig:
    API_TITLE = "mflux-server"
    API_VERSION = __version__
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "/swagger"
    OPENAPI_SWAGGER_UI_URL = pages.SWAGGER_ASSETS
    API_SPEC_OPTIONS = {
        "info": {
            "description": "Queue text-to-image tasks for one GPU and follow them: position, progress, forecast.",
            "license": {"name": "Apache-2.0"},
        }
    }
    MAX_CONTENT_LENGTH = 256 * 1024  # a prompt is a few kB; anything bigger is refused with 413
    JSON_SORT_KEYS = False
    MFLUX_VERSION = __version__
    MFLUX_LIMITS = {"min_side": 64, "max_side": 2560, "max_steps": 100, "max_prompt_chars": 4000}
    MFLUX_CORS_ORIGINS = "*"  # as the original: its web UI may be opened from a file or another host
    MFLUX_API_KEY = None
    MFLUX_MAX_HELD_REQUESTS = 12  # open event streams + blocking generation calls; server.py: --threads - 4
    MFLUX_MAX_IMAGES_PER_REQUEST = 4  # n of /v1/images/generations, batch_size x n_iter of /sdapi/v1/txt2img
    MFLUX_SSE_KEEPALIVE_SECONDS = 15.0


def create_app(config: Mapping[str, Any] | None = None, *, service: TaskService) -> Flask:
    app = Flask(__name__)
    app.config.from_object(DefaultConfig)
    app.config.from_prefixed_env("MFLUX_SERVER")
    if config:
        app.config.update(config)
    app.json.sort_keys = False
    app.extensions[EXTENSION] = service

    origins = auth.parse_origins(app.config["MFLUX_CORS_ORIGINS"])
    CORS(app, origins=origins, expose_headers=["X-Total-Count", "Retry-After"])
    api = JsonApi(app)
    for blueprint in (tasks.blp, images.blp, system.blp, events.blp, previews.blp, openai.blp, a1111.blp):
        api.register_blueprint(blueprint)
    metrics.init_app(app, api)
    document_limits(api.spec.components.schemas, app.config["MFLUX_LIMITS"])
    register_domain_errors(app)
    auth.init_app(app, api)
    slots.init_app(app)
    app.register_blueprint(pages.blp)
    compat.init_app(app, api)
    app.wsgi_app = StatusFastPath(app)  # last: the hottest request, without Flask's cost (api/fast_status.py)
    return app
