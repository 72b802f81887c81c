"""/api/ls, /api/ps, /api/load: the models."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from api.context import service_of
from api.documents import document_models
from api.models.views import blp


def init_app(app: Flask, api: Api) -> None:
    api.register_blueprint(blp)
    document_models(api.spec.components.schemas["LoadRequest"]["properties"], service_of(app), from_text_only=True)
