"""/sdapi/v1: the AUTOMATIC1111 web UI's API, as chat programs use it."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from api.a1111.errors import A1111Shape
from api.a1111.views import DEFAULT_SIDE, blp, checkpoint_names
from api.context import service_of
from api.documents import document_prompts, document_ranges
from api.errors import register_shape
from core.rules import MAX_SEED


def init_app(app: Flask, api: Api) -> None:
    api.register_blueprint(blp)
    register_shape(app, A1111Shape())
    service = service_of(app)
    limits = service.limits
    schemas = api.spec.components.schemas
    txt2img = schemas["Txt2Img"]
    properties = txt2img["properties"]
    document_prompts(properties, limits)
    document_ranges(properties, limits, {"guidance": "cfg_scale", "seed": None, "quality": None})
    for side in ("width", "height"):
        properties[side]["default"] = limits.clamp_side(DEFAULT_SIDE)
    properties["seed"].update(minimum=-1, maximum=MAX_SEED)
    cap = limits.max_images_per_request
    for name in ("batch_size", "n_iter"):
        properties[name].update(minimum=1, maximum=cap)
    # batch_size × n_iter <= cap, said in JSON Schema: one branch per batch size.
    from_text = [*checkpoint_names(service, from_text_only=True), None]  # txt2img and the default: no image needed
    schemas["Options"]["properties"]["sd_model_checkpoint"]["enum"] = from_text
    properties["override_settings"].update(
        {"properties": {"sd_model_checkpoint": {"type": "string", "nullable": True, "enum": from_text}}}
    )
    txt2img["anyOf"] = [
        {"properties": {"batch_size": {"maximum": size}, "n_iter": {"maximum": cap // size}}}
        for size in range(1, cap + 1)
    ]
