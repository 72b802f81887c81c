"""/api/health and /api/info."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from api.system.views import blp


def init_app(app: Flask, api: Api) -> None:
    api.register_blueprint(blp)
