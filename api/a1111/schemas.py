"""Request schemas of the AUTOMATIC1111-compatible /sdapi/v1 endpoints (A1111's field names and defaults)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from api.fields import BASE64_IMAGE_DOC, Base64Image
from core.rules import MAX_CALLBACK_URL_CHARS


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
    callback_url = fields.String(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "mflux-server's extension: a webhook URL, POSTed each image's outcome when it ends, as "
            "for POST /api/generate.",
            "maxLength": MAX_CALLBACK_URL_CHARS,
        },
    )
    override_settings = fields.Dict(
        load_default=None,
        allow_none=True,
        metadata={"description": "sd_model_checkpoint: the model for this request; other settings are ignored."},
    )


class Img2ImgSchema(Txt2ImgSchema):
    """img2img and inpainting, with A1111's fields and defaults (modules/processing.py, api/models.py)."""

    init_images = fields.List(
        Base64Image(metadata=BASE64_IMAGE_DOC),
        required=True,
        validate=validate.Length(min=1, error="Send at least one image."),
        metadata={"description": "Base64 (or data: URLs). One image serves the whole batch; several: one each "
                  "(batch_size becomes their number). An edit model reads them all as its references."},
    )  # fmt: skip
    denoising_strength = fields.Float(
        load_default=0.75,
        allow_none=True,
        validate=validate.Range(0.0, 1.0),
        metadata={"description": "How much is repainted: 1 - mflux's image_strength (text-to-image models)."},
    )
    mask = Base64Image(
        load_default=None,
        allow_none=True,
        metadata=BASE64_IMAGE_DOC | {"nullable": True, "description": "White repaints, black keeps (an RGBA mask: "
                                                                       "its opacity)."},
    )  # fmt: skip
    mask_blur = fields.Integer(load_default=None, allow_none=True, metadata={"description": "Default 4."})
    mask_blur_x = fields.Integer(load_default=4, allow_none=True)
    mask_blur_y = fields.Integer(load_default=4, allow_none=True, metadata={"description": "Used as mask_blur_x."})
    inpainting_fill = fields.Integer(
        load_default=0,
        validate=validate.Range(0, 3),
        metadata={"description": "What the masked area starts as: 0 its surroundings blurred in, 1 the picture, 2 "
                  "noise, 3 grey (done in pixels, not latents)."},
    )  # fmt: skip
    inpaint_full_res = fields.Boolean(
        load_default=True, metadata={"description": "Repaint only the masked area, at the full size, pasted back."}
    )
    inpaint_full_res_padding = fields.Integer(load_default=0, metadata={"description": "Pixels around that area."})
    inpainting_mask_invert = fields.Integer(
        load_default=0, validate=validate.OneOf([0, 1]), metadata={"description": "1: repaint what is black."}
    )
    resize_mode = fields.Integer(
        load_default=0,
        validate=validate.Range(0, 3),
        metadata={"description": "0 stretch, 1 crop and resize, 2 resize and fill, 3 as 0."},
    )
    include_init_images = fields.Boolean(
        load_default=False, metadata={"description": "Echo init_images and mask in `parameters`."}
    )
    image_cfg_scale = fields.Float(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    initial_noise_multiplier = fields.Float(load_default=None, allow_none=True, metadata={"description": "Ignored."})


class ExtraSingleImageSchema(Schema):
    """Upscaling one image, as A1111's extras tab (run here by an upscale model the server offers)."""

    class Meta:
        unknown = EXCLUDE

    image = Base64Image(required=True, metadata=BASE64_IMAGE_DOC)
    resize_mode = fields.Integer(
        load_default=0,
        validate=validate.OneOf([0, 1]),
        metadata={"description": "0: by upscaling_resize; 1: to upscaling_resize_w × _h."},
    )
    upscaling_resize = fields.Float(load_default=2.0, validate=validate.Range(1.0, 8.0))
    upscaling_resize_w = fields.Integer(load_default=None, allow_none=True)
    upscaling_resize_h = fields.Integer(load_default=None, allow_none=True)
    upscaler_1 = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "An upscale model this server offers; else the first."},
    )


class ProgressArgsSchema(Schema):
    skip_current_image = fields.Boolean(load_default=False, metadata={"description": "Leave out current_image."})


class OptionsSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # A1111 has hundreds of options; none of the others means anything here

    sd_model_checkpoint = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "Makes this model (title, name, hash or alias) the default; answers once loaded."},
    )
