"""/api's queue: generate, status, tasks, cancel, clear."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from api.context import service_of
from api.documents import document_models, document_prompts, document_ranges
from api.tasks.views import blp


def init_app(app: Flask, api: Api) -> None:
    api.register_blueprint(blp)
    service = service_of(app)
    limits = service.limits
    schemas = api.spec.components.schemas
    properties = schemas["GenerateRequest"]["properties"]
    document_models(properties, service, schemas)
    document_prompts(properties, limits)
    document_ranges(properties, limits, {"seed": None})  # the seed's own schema says -1 means random
    for side in ("width", "height"):
        properties[side]["default"] = limits.default_side
