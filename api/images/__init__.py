"""/api's images: the finished ones, and previews of the running one."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from api.images.views import blp


def init_app(app: Flask, api: Api) -> None:
    api.register_blueprint(blp)
