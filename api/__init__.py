"""The HTTP API: a Flask app that translates requests into calls on the task service (and answers back)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_cors import CORS

from api import (
    a1111,
    auth,
    bodies,
    errors,
    events,
    images,
    metrics,
    models,
    openai_images,
    pages,
    slots,
    system,
    tasks,
    workers,
)
from api.config import DefaultConfig
from api.context import EXTENSION
from api.fast_status import StatusFastPath
from api.public_url import PublicHost
from api.smorest import BoundedJsonProvider, JsonApi
from taskqueue.service import TaskService

# One sub-package (or module) per resource or imitated API, each with `init_app(app, api)`.
RESOURCES = (tasks, images, events, models, workers, system, openai_images, a1111, metrics)


def create_app(config: Mapping[str, Any] | None = None, *, service: TaskService) -> Flask:
    app = Flask(__name__)
    app.config.from_object(DefaultConfig)
    app.config.from_prefixed_env("MFLUX_SERVER")
    if config:
        app.config.update(config)
    app.json = BoundedJsonProvider(app)
    app.json.sort_keys = False
    app.extensions[EXTENSION] = service

    CORS(
        app,
        origins=auth.parse_origins(app.config["MFLUX_CORS_ORIGINS"]),
        expose_headers=["X-Total-Count", "Retry-After"],
    )
    api = JsonApi(app)
    for resource in RESOURCES:
        resource.init_app(app, api)
    errors.init_app(app, api)
    auth.init_app(app, api)
    admission = slots.init_app(app)
    bodies.init_app(app)
    app.register_blueprint(pages.blp)
    app.wsgi_app = PublicHost(app)  # links and redirects name the server, not the Host header (api/public_url.py)
    app.wsgi_app = StatusFastPath(app)  # the hottest request, without Flask's cost (api/fast_status.py)
    app.wsgi_app = admission.around(app.wsgi_app)  # last: two requests at a time run Python (api/slots.py)
    return app
