"""Request and response schemas of /api/generate, /api/status, /api/tasks, /api/cancel and /api/clear."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, post_load, validate

from api.fields import BASE64_IMAGE_DOC, Base64Image, Format, Seed, WholeNumber
from core.rules import MAX_CALLBACK_URL_CHARS, MAX_SEED
from core.submissions import GenerationRequest, LoraRequest, MaskMeaning, MaskRequest, Resize
from core.tasks import ImageFormat, TaskStatus


class LoraSchema(Schema):
    name = fields.String(required=True, metadata={"description": "A LoRA of the server's LoRA library (GET /api/ls)."})
    scale = fields.Float(load_default=1.0, metadata={"description": "How strongly to apply it (-4 to 4)."})

    @post_load
    def _to_request(self, data: dict, **kwargs) -> LoraRequest:
        return LoraRequest(**data)


class GenerateRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # the original web UI sends fields we do not use

    prompt = fields.String(required=True, metadata={"description": "What to draw.", "example": "A lighthouse at dusk"})
    model = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "A model this server offers (GET /api/ls), by name or alias; absent: the default."},
    )
    quantize = fields.Integer(
        load_default=None, allow_none=True, metadata={"description": "Bits (3, 4, 5, 6, 8); a variant of the model."}
    )
    loras = fields.List(
        fields.Nested(LoraSchema),
        load_default=(),
        metadata={"description": "LoRAs from the server's library; a model with LoRAs is a variant of its own."},
    )
    negative_prompt = fields.String(
        load_default=None, allow_none=True, metadata={"description": "For models that support it."}
    )
    seed = Seed(
        load_default=None,
        allow_none=True,
        metadata={
            "description": 'Integer or digit string; absent, null, "" or -1: random.',
            "example": 42,
            "oneOf": [
                {"type": "integer", "minimum": -1, "maximum": MAX_SEED},
                # Digit strings up to 9 digits are always in range; longer ones are accepted while <= MAX_SEED.
                {"type": "string", "pattern": r"^ *(-1|[0-9]{0,9}) *$"},
            ],
        },
    )
    width = WholeNumber(
        load_default=None, metadata={"description": "Rounded down to a multiple of 16; absent: 1024 (within limits)."}
    )
    height = WholeNumber(
        load_default=None, metadata={"description": "Rounded down to a multiple of 16; absent: 1024 (within limits)."}
    )
    steps = WholeNumber(
        load_default=None, allow_none=True, metadata={"description": "Denoising steps; default per model."}
    )
    guidance = fields.Float(
        load_default=None,
        allow_none=True,
        metadata={"description": "Guidance scale; default per model, ignored by models without it."},
    )
    format = Format(load_default=ImageFormat.JPEG, metadata={"enum": [f.value for f in ImageFormat]})
    quality = WholeNumber(load_default=85, metadata={"description": "JPEG/WEBP quality."})
    priority = fields.Boolean(load_default=False, metadata={"description": "Go ahead of every normal waiting task."})
    callback_url = fields.String(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "A webhook: an http(s) URL on a public address, POSTed the task's outcome when it ends "
            "(README: Webhooks).",
            "maxLength": MAX_CALLBACK_URL_CHARS,
        },
    )
    init_image = Base64Image(
        load_default=None,
        allow_none=True,
        metadata=BASE64_IMAGE_DOC
        | {
            "nullable": True,
            "description": "A picture to start from (base64, with or without a data: prefix; null: none): img2img "
            "for text-to-image models, the picture to change for edit models, the input of an upscaler. Without "
            "width and height, the result takes its size (within the limits).",
        },
    )
    init_images = fields.List(
        Base64Image(metadata=BASE64_IMAGE_DOC),
        load_default=(),
        metadata={"description": "Edit models: the reference pictures (after init_image, if both are sent)."},
    )
    image_strength = fields.Float(
        load_default=None,
        allow_none=True,
        metadata={"description": "img2img: how much of the init image is kept, 0 to 1 (mflux's image_strength: "
                  "the share of the denoising skipped); default 0.4, as the original server."},
    )  # fmt: skip
    mask_image = Base64Image(
        load_default=None,
        allow_none=True,
        metadata=BASE64_IMAGE_DOC
        | {
            "nullable": True,
            "description": "Inpainting: white where the picture is repainted, black where it is kept (or, in an "
            "RGBA mask, opaque = repainted); resized to the picture. Outside it, the result is the init image.",
        },
    )
    mask_blur = WholeNumber(load_default=4, metadata={"description": "Pixels of feathering at the mask's edge."})
    resize = fields.String(
        load_default="stretch",
        validate=validate.OneOf([r.name.lower() for r in Resize]),
        metadata={"description": "How an init image of another shape meets width × height: stretch it, crop "
                  "it (keeping its proportions) or fit it and fill the edges."},
    )  # fmt: skip

    @post_load
    def _to_request(self, data: dict, **kwargs) -> GenerationRequest:
        first, mask = data.pop("init_image", None), data.pop("mask_image", None)
        blur = data.pop("mask_blur")
        data["init_images"] = ((first,) if first is not None else ()) + tuple(data.get("init_images") or ())
        data["mask"] = MaskRequest(mask, MaskMeaning.WHITE, blur=blur) if mask is not None else None
        data["resize"] = Resize[data["resize"].upper()]
        data["loras"] = tuple(data.get("loras") or ())
        return GenerationRequest(**data)


class GenerateResponseSchema(Schema):
    task_id = fields.String(required=True, metadata={"example": "3f2a9c1b0d4e5f60"})
    model = fields.String(required=True, metadata={"description": "The model (variant) it runs on."})
    task_length = fields.Integer(required=True, metadata={"description": "Tasks ahead of this one, running included."})
    expected_time_seconds = fields.Float(required=True, metadata={"description": "Forecast until the image is ready."})
    status = fields.String(required=True)
    seed = fields.Integer(required=True, metadata={"description": "The seed used (drawn at random if not given)."})
    width = fields.Integer(required=True, metadata={"description": "Actual width after rounding."})
    height = fields.Integer(required=True, metadata={"description": "Actual height after rounding."})
    steps = fields.Integer(required=True)
    guidance = fields.Float(required=True)


class TaskIdSchema(Schema):
    task_id = fields.String(required=True, validate=validate.Length(1, 64), metadata={"example": "3f2a9c1b0d4e5f60"})


class ProgressSchema(Schema):
    step = fields.Integer(required=True, metadata={"description": "Finished denoising steps."})
    steps = fields.Integer(required=True)


class StatusSchema(Schema):
    task_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": [s.value for s in TaskStatus]})
    pos = fields.Integer(required=True, metadata={"description": "Waiting tasks ahead (0 = next, or running)."})
    wait_remaining = fields.Float(required=True, metadata={"description": "Seconds until the image is ready."})
    progress = fields.Nested(ProgressSchema, allow_none=True, required=True)
    error = fields.String(allow_none=True, required=True, metadata={"description": "Why a failed task failed."})
    model = fields.String(required=True, metadata={"description": "The model (variant) it runs on, e.g. dev@q8."})
    loading_model = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "The model being loaded for it, or to be loaded first."},
    )
    worker = fields.String(
        allow_none=True, required=True, metadata={"description": "The worker it runs (or ran) on; null while waiting."}
    )


class TaskSchema(StatusSchema):
    """A task as listed. Null where `anonymous`: another key's task, shown to a user key as a queue entry only."""

    task_id = fields.String(allow_none=True, required=True, metadata={"description": "Null where anonymous."})
    prompt = fields.String(allow_none=True, required=True)
    negative_prompt = fields.String(allow_none=True)
    seed = fields.Integer(allow_none=True, required=True)
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    steps = fields.Integer(required=True)
    guidance = fields.Float(allow_none=True, required=True)
    format = fields.String(required=True)
    quality = fields.Integer(required=True)
    priority = fields.Boolean(required=True)
    engine = fields.String(required=True, metadata={"description": "'demo' marks the procedural test engine."})
    demo = fields.Boolean(required=True, metadata={"description": "True: a procedural demo image, not a model's."})
    start_time = fields.Float(allow_none=True, required=True, metadata={"description": "Submitted (Unix time)."})
    compute_time = fields.Float(allow_none=True, required=True, metadata={"description": "Started on the engine."})
    end_time = fields.Float(allow_none=True, required=True, metadata={"description": "Finished, failed or cancelled."})
    render_end_time = fields.Float(
        allow_none=True,
        required=True,
        metadata={"description": "The engine finished its pixels and was free again (encoding follows)."},
    )
    attempts = fields.Integer(required=True)
    input_images = fields.Integer(
        allow_none=True, required=True, metadata={"description": "Pictures it started from (0: text)."}
    )
    image_strength = fields.Float(
        required=True, allow_none=True, metadata={"description": "img2img: the share of the init image kept."}
    )
    masked = fields.Boolean(
        allow_none=True, required=True, metadata={"description": "Only a masked area was repainted."}
    )
    anonymous = fields.Boolean(
        required=True,
        metadata={"description": "Another API key's task (to a user key): no id, prompt, seed or times; it cannot "
                  "be fetched, followed or cancelled."},
    )  # fmt: skip


class TaskListArgsSchema(Schema):
    limit = fields.Integer(load_default=1000, validate=validate.Range(1, 10_000))
    # Bounded: SQLite integers are 64-bit, and a larger OFFSET was an OverflowError, a 500.
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))
    status = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in TaskStatus])),
        load_default=None,
        metadata={"description": "Only tasks in these states (repeat the parameter for several)."},
    )


class CancelResponseSchema(Schema):
    task_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "The task's status now."})
    previous_status = fields.String(required=True)
    cancelled = fields.Boolean(required=True, metadata={"description": "False if it had already ended."})


class ClearResponseSchema(Schema):
    cancelled = fields.Integer(required=True, metadata={"description": "How many tasks were cancelled."})
    task_ids = fields.List(fields.String(), required=True)
