"""/api/ls, /api/ps, /api/load: the models, as the original server's latest version lists and switches them."""

from __future__ import annotations

from flask import jsonify
from flask.views import MethodView

from api.context import caller, service
from api.errors import ErrorSchema
from api.models.schemas import (
    ListArgsSchema,
    LoadRequestSchema,
    LoadResponseSchema,
    ModelEntrySchema,
    SettingsSchema,
)
from api.slots import held_requests
from api.smorest import ApiBlueprint
from core.rules import Limits, side_range
from taskqueue.service import ModelListing

blp = ApiBlueprint("models", __name__, url_prefix="/api", description="The models: list, settings, switch.")


def entry_of(listed: ModelListing, limits: Limits) -> dict:
    model = listed.info
    min_side, max_side = side_range(model, limits)
    return {
        "loader": model.family,
        "steps": model.default_steps,
        "label": model.label,
        "kind": model.kind.value,
        "aliases": list(model.aliases),
        "default_guidance": model.default_guidance,
        "guidance_adjustable": model.guidance_adjustable,
        "supports_negative_prompt": model.supports_negative_prompt,
        "negative_prompt": model.negative_prompt,
        "size_step": model.size_step,
        "min_side": min_side,
        "max_side": max_side,
        "img2img": model.img2img,
        "max_references": model.max_references,
        "needs_image": model.needs_image,
        "takes_mask": model.takes_mask,
        "accepts_mask": model.accepts_mask,
        "offered": listed.offered,
        "present": listed.present,
        "default": listed.default,
        "loaded": listed.loaded,
        "loading": listed.loading,
        "load_error": listed.load_error,
        "switch_seconds": round(listed.switch_seconds, 3),
        "memory_gb": model.memory_gb,
        "repo": model.repo,
        "demo": model.is_demo,
    }


@blp.route("/ls")
class ListModels(MethodView):
    @blp.arguments(ListArgsSchema, location="query")
    @blp.response(200, ModelEntrySchema(many=True), description="An object keyed by model name (see the schema).")
    @blp.doc(responses={"200": {"content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": {"$ref": "#/components/schemas/ModelEntry"}}}}}})  # fmt: skip
    def get(self, args):
        """The models this server offers, keyed by name as the original's /api/ls, with their defaults, whether
        their weights are here, which are loaded, and what a switch to each costs. `all=true`: the whole catalog."""
        tasks = service()
        listed = [m for m in tasks.models() if args["all"] or m.offered]
        return jsonify({m.info.name: entry_of(m, tasks.limits) for m in listed})


@blp.route("/ps")
class Settings(MethodView):
    @blp.response(200, SettingsSchema)
    def get(self):
        """The default model and the worker's state, as the original's /api/ps."""
        tasks = service()
        variant, model, health = tasks.default_variant, tasks.default_model, tasks.health()
        return {
            "model": variant.model,
            "quantize": variant.quantize,
            "cache_limit": tasks.mlx_cache_limit,
            "default_steps": model.default_steps,
            "variant": variant.key,
            "engine": tasks.engine,
            "loaded": list(health.loaded),
            "loading": health.loading,
            "loras": tasks.lora_names(),
        }


@blp.route("/load")
class Load(MethodView):
    @blp.arguments(LoadRequestSchema)
    @blp.response(200, LoadResponseSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="A model this server does not offer.")
    @blp.alt_response(503, schema=ErrorSchema, description="The model could not be loaded.")
    def post(self, body):
        """Make a model the default for tasks that name none; answers once it is loaded, as the original did."""
        tasks = service()
        with held_requests().hold():
            variant = tasks.load_model(body["model"], body["quantize"], caller=caller())
        return {
            "model": variant.model,
            "quantize": variant.quantize,
            "default_steps": tasks.default_model.default_steps,
            "variant": variant.key,
            "loaded": variant.key in tasks.health().loaded,
        }
