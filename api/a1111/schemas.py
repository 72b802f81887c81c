"""Request schemas of the AUTOMATIC1111-compatible /sdapi/v1 endpoints (A1111's field names and defaults)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate


class Txt2ImgSchema(Schema):
    """The fields we use, plus the common ones clients send that are accepted and ignored (and echoed back)."""

    class Meta:
        # Clients send much more (SillyTavern even forwards its own `url` and `auth`): ignore what is unknown.
        unknown = EXCLUDE

    prompt = fields.String(required=True, metadata={"example": "a lighthouse at dusk"})
    negative_prompt = fields.String(load_default="", allow_none=True, metadata={"description": "For models with it."})
    seed = fields.Integer(
        load_default=-1,
        allow_none=True,
        metadata={"description": "-1: random. Image i of a batch gets seed + i, as in A1111."},
    )
    steps = fields.Integer(
        load_default=None, allow_none=True, metadata={"description": "Absent: the model's default (not A1111's 50)."}
    )
    # Absent: 512 as in A1111 (or the nearest side the server's limits allow).
    width = fields.Integer(load_default=None, metadata={"description": "Rounded down to a multiple of 16."})
    height = fields.Integer(load_default=None, metadata={"description": "Rounded down to a multiple of 16."})
    cfg_scale = fields.Float(
        load_default=None,
        allow_none=True,
        metadata={"description": "Used as the model's guidance (ignored by models without it); absent: its default."},
    )
    batch_size = fields.Integer(
        load_default=1, validate=validate.Range(1), metadata={"description": "Images per batch."}
    )
    n_iter = fields.Integer(load_default=1, validate=validate.Range(1), metadata={"description": "Batches."})
    send_images = fields.Boolean(load_default=True)
    save_images = fields.Boolean(load_default=False, metadata={"description": "Ignored."})
    sampler_name = fields.String(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    sampler_index = fields.String(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    scheduler = fields.String(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    styles = fields.List(fields.String(), load_default=None, allow_none=True, metadata={"description": "Ignored."})
    restore_faces = fields.Boolean(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    tiling = fields.Boolean(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    enable_hr = fields.Boolean(load_default=False, allow_none=True, metadata={"description": "Ignored (no hires fix)."})
    denoising_strength = fields.Float(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    override_settings = fields.Dict(load_default=None, allow_none=True, metadata={"description": "Ignored."})


class ProgressArgsSchema(Schema):
    skip_current_image = fields.Boolean(load_default=False, metadata={"description": "Leave out current_image."})


class OptionsSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # A1111 has hundreds of options; none of the others means anything here

    sd_model_checkpoint = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "Must name the loaded model (title, name or hash)."},
    )
