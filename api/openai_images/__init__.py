"""/v1: the OpenAI Images API."""

from __future__ import annotations

import re

from flask import Flask
from flask_smorest import Api

from api.context import service_of
from api.documents import document_prompts, model_spellings
from api.errors import register_shape
from api.openai_images.errors import OpenAIShape
from api.openai_images.schemas import COMMON_SIZES, OPENAI_MODEL_NAMES
from api.openai_images.views import blp


def init_app(app: Flask, api: Api) -> None:
    api.register_blueprint(blp)
    register_shape(app, OpenAIShape())
    service = service_of(app)
    limits = service.limits
    images = api.spec.components.schemas["ImageGeneration"]["properties"]
    document_prompts(images, limits)
    images["n"].update(minimum=1, maximum=limits.max_images_per_request)
    sides = range(limits.min_side, limits.max_side + 1)
    sizes = [size for size in COMMON_SIZES if all(int(side) in sides for side in size.split("x"))]
    images["size"]["enum"] = ["auto", *sizes, None]
    images["size"]["description"] += (
        f" Any WIDTHxHEIGHT with sides from {limits.min_side} to {limits.max_side} is accepted; common ones listed."
    )
    from_text = "|".join(re.escape(spelling) for spelling in model_spellings(service, from_text_only=True))
    images["model"]["pattern"] = f"^({from_text}|{OPENAI_MODEL_NAMES})$"
    for edits in ("ImageEditForm", "ImageEditJson"):
        properties = api.spec.components.schemas[edits]["properties"]
        document_prompts(properties, limits)
        properties["n"].update(minimum=1, maximum=limits.max_images_per_request)
        properties["size"]["enum"] = images["size"]["enum"]
        any_model = "|".join(re.escape(spelling) for spelling in model_spellings(service))
        properties["model"]["pattern"] = f"^({any_model}|{OPENAI_MODEL_NAMES})$"
