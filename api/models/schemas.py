"""Schemas of /api/ls, /api/ps and /api/load: the original server's shapes, with what we add."""

from __future__ import annotations

from marshmallow import Schema, fields


class ModelEntrySchema(Schema):
    """One model in /api/ls; `loader` and `steps` are the original's fields."""

    loader = fields.String(required=True, metadata={"description": "The model family that builds it."})
    steps = fields.Integer(required=True, metadata={"description": "Its default denoising steps."})
    label = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": ["text-to-image", "edit", "inpaint", "upscale"]})
    aliases = fields.List(fields.String(), required=True)
    default_guidance = fields.Float(required=True)
    guidance_adjustable = fields.Boolean(required=True)
    supports_negative_prompt = fields.Boolean(required=True, metadata={"description": "At its default guidance."})
    negative_prompt = fields.String(
        required=True, metadata={"description": "When it encodes one: never, with-cfg (guidance above 1), always."}
    )
    size_step = fields.Integer(required=True)
    min_side = fields.Integer(required=True)
    max_side = fields.Integer(required=True)
    img2img = fields.Boolean(required=True, metadata={"description": "Takes init_image and image_strength."})
    max_references = fields.Integer(required=True, metadata={"description": "Reference images an edit model takes."})
    needs_image = fields.Boolean(required=True)
    takes_mask = fields.Boolean(required=True, metadata={"description": "The model itself reads a mask."})
    accepts_mask = fields.Boolean(
        required=True,
        metadata={"description": "A mask_image is honoured (by the model, or by pasting its picture through the "
                  "mask): every model that starts from an image but upscalers."},
    )  # fmt: skip
    offered = fields.Boolean(required=True, metadata={"description": "Clients may ask for it."})
    present = fields.Boolean(required=True, metadata={"description": "Its weights are on the server."})
    default = fields.Boolean(required=True, metadata={"description": "Tasks naming no model run it."})
    loaded = fields.Boolean(required=True, metadata={"description": "Warm: its tasks start without a load."})
    loading = fields.Boolean(required=True)
    load_error = fields.String(allow_none=True, required=True)
    switch_seconds = fields.Float(required=True, metadata={"description": "What a switch to it adds to a wait."})
    memory_gb = fields.Float(allow_none=True, required=True, metadata={"description": "Rough, bf16, loaded."})
    repo = fields.String(allow_none=True, required=True)
    demo = fields.Boolean(required=True)


class ListArgsSchema(Schema):
    all = fields.Boolean(load_default=False, metadata={"description": "The whole catalog, not only offered models."})


class SettingsSchema(Schema):
    """/api/ps: the original's fields (model, quantize, cache_limit, default_steps), and what we add."""

    model = fields.String(required=True, metadata={"description": "The default model."})
    quantize = fields.Integer(allow_none=True, required=True)
    cache_limit = fields.Integer(required=True, metadata={"description": "MLX's cache limit in bytes (0: MLX's)."})
    default_steps = fields.Integer(required=True)
    variant = fields.String(required=True, metadata={"description": "The default model with its quantization, LoRAs."})
    engine = fields.String(required=True)
    loaded = fields.List(fields.String(), required=True, metadata={"description": "Variants the worker holds."})
    loading = fields.String(allow_none=True, required=True)
    loras = fields.List(fields.String(), required=True, metadata={"description": "The LoRA library's names."})


class LoadRequestSchema(Schema):
    model = fields.String(required=True, metadata={"example": "dev"})
    quantize = fields.Integer(load_default=None, allow_none=True, metadata={"description": "3, 4, 5, 6 or 8 bits."})


class LoadResponseSchema(Schema):
    model = fields.String(required=True)
    quantize = fields.Integer(allow_none=True, required=True)
    default_steps = fields.Integer(required=True)
    variant = fields.String(required=True)
    loaded = fields.Boolean(required=True, metadata={"description": "False: still loading when the wait ended."})
