"""Response schemas of /api/health and /api/info."""

from __future__ import annotations

from marshmallow import Schema, fields


class HealthSchema(Schema):
    ok = fields.Boolean(required=True)
    worker_alive = fields.Boolean(required=True)
    worker_pid = fields.Integer(allow_none=True)
    model_loaded = fields.Boolean(required=True)
    engine = fields.String(required=True)
    model = fields.String(required=True)
    error = fields.String(allow_none=True)
    worker_restarts = fields.Integer(required=True)
    waiting = fields.Integer(required=True)
    running = fields.Integer(required=True)
    loaded = fields.List(fields.String(), required=True, metadata={"description": "Variants the worker holds."})
    loading = fields.String(allow_none=True, required=True)


class InfoSchema(Schema):
    version = fields.String(required=True)
    engine = fields.String(required=True)
    model = fields.String(required=True, metadata={"description": "The default model."})
    variant = fields.String(
        required=True, metadata={"description": "The default model's variant (quantization, LoRAs)."}
    )
    label = fields.String(required=True)
    demo = fields.Boolean(required=True)
    default_steps = fields.Integer(required=True)
    default_guidance = fields.Float(required=True)
    guidance_adjustable = fields.Boolean(required=True)
    supports_negative_prompt = fields.Boolean(required=True)
    size_step = fields.Integer(required=True)
    min_side = fields.Integer(required=True)
    max_side = fields.Integer(required=True)
    max_pixels = fields.Integer(required=True)
    max_input_mb = fields.Float(required=True, metadata={"description": "Largest input image file, in MB."})
    max_input_side = fields.Integer(required=True, metadata={"description": "Largest side of an input image."})
    max_input_images = fields.Integer(required=True, metadata={"description": "Most input images per task."})
    max_steps = fields.Integer(required=True)
    max_prompt_chars = fields.Integer(required=True)
    max_images_per_request = fields.Integer(required=True)
    formats = fields.List(fields.String(), required=True)
    previews = fields.Boolean(required=True)
    auth_required = fields.Boolean(required=True)
    models = fields.List(fields.String(), required=True, metadata={"description": "Every model offered (GET /api/ls)."})
