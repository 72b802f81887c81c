"""Request and response schemas of /api/generate, /api/status, /api/tasks, /api/cancel and /api/clear."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from api.fields import Format, Seed, WholeNumber
from core.rules import MAX_SEED
from core.submissions import GenerationRequest
from core.tasks import ImageFormat, TaskStatus


class GenerateRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # the original web UI sends fields we do not use

    prompt = fields.String(required=True, metadata={"description": "What to draw.", "example": "A lighthouse at dusk"})
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
    init_image = fields.Raw(
        load_default=None,
        allow_none=True,
        metadata={"description": "Image-to-image is not supported; send null.", "enum": [None]},
    )

    @validates_schema
    def _no_image_input(self, data: dict, **kwargs) -> None:
        if data.get("init_image") is not None:
            raise ValidationError({"init_image": ["Image-to-image is not supported by this server; send null."]})

    @post_load
    def _to_request(self, data: dict, **kwargs) -> GenerationRequest:
        data.pop("init_image", None)
        return GenerationRequest(**data)


class GenerateResponseSchema(Schema):
    task_id = fields.String(required=True, metadata={"example": "3f2a9c1b0d4e5f60"})
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


class TaskSchema(StatusSchema):
    prompt = fields.String(required=True)
    negative_prompt = fields.String(allow_none=True)
    seed = fields.Integer(required=True)
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    steps = fields.Integer(required=True)
    guidance = fields.Float(required=True)
    format = fields.String(required=True)
    quality = fields.Integer(required=True)
    priority = fields.Boolean(required=True)
    engine = fields.String(required=True, metadata={"description": "'demo' marks the procedural test engine."})
    demo = fields.Boolean(required=True, metadata={"description": "True: a procedural demo image, not a model's."})
    start_time = fields.Float(required=True, metadata={"description": "Submitted (Unix time)."})
    compute_time = fields.Float(allow_none=True, required=True, metadata={"description": "Started on the engine."})
    end_time = fields.Float(allow_none=True, required=True, metadata={"description": "Finished, failed or cancelled."})
    render_end_time = fields.Float(
        allow_none=True,
        required=True,
        metadata={"description": "The engine finished its pixels and was free again (encoding follows)."},
    )
    attempts = fields.Integer(required=True)


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
