"""/api/events: Server-Sent Events for one task."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from api.events.views import blp


def init_app(app: Flask, api: Api) -> None:
    api.register_blueprint(blp)
