"""/api/health and /api/info: is the server well, and what does it run."""

from __future__ import annotations

import dataclasses

from flask import current_app
from flask.views import MethodView

from api.auth import keys_in_use
from api.context import service
from api.smorest import ApiBlueprint
from api.system.schemas import HealthSchema, InfoSchema
from core import __version__
from core.tasks import ImageFormat

blp = ApiBlueprint("system", __name__, url_prefix="/api", description="Health and capabilities of the server.")


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="The worker is down or the engine failed to load.")
    def get(self):
        """For service managers and load balancers: 200 when the worker is alive and its engine loaded or loading."""
        health = service().health()
        return dataclasses.asdict(health), 200 if health.ok else 503


@blp.route("/info")
class Info(MethodView):
    @blp.response(200, InfoSchema)
    def get(self):
        """The default model and its defaults, the offered models, and the server's limits (what a form needs)."""
        tasks = service()
        info, limits = tasks.default_model, tasks.limits
        return {
            "version": __version__,
            "engine": tasks.engine,
            "model": info.name,
            "variant": tasks.default_variant.key,
            "label": info.label,
            "demo": info.is_demo,
            "default_steps": info.default_steps,
            "default_guidance": info.default_guidance,
            "guidance_adjustable": info.guidance_adjustable,
            "supports_negative_prompt": info.supports_negative_prompt,
            "size_step": info.size_step,
            "min_side": limits.min_side,
            "max_side": limits.max_side,
            "max_pixels": limits.max_pixels,
            "max_steps": limits.max_steps,
            "max_prompt_chars": limits.max_prompt_chars,
            "max_images_per_request": limits.max_images_per_request,
            "max_input_mb": limits.max_input_mb,
            "max_input_side": limits.max_input_side,
            "max_input_images": limits.max_input_images,
            "formats": [f.value for f in ImageFormat],
            "previews": tasks.previews_enabled,
            "auth_required": keys_in_use(current_app.config),
            "models": [m.info.name for m in tasks.models() if m.offered],
        }
