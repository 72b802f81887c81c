"""/api/workers: the machines that render, as the scheduler sees them."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from api.workers.views import blp


def init_app(app: Flask, api: Api) -> None:
    api.register_blueprint(blp)
