"""Request and response schemas of the /api endpoints: validation and documentation in one place."""

from __future__ import annotations

from flask import current_app
from flask_smorest.error_handler import ErrorSchema as SmorestErrorSchema
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from taskqueue.service import MAX_SEED, GenerationRequest
from taskqueue.tasks import ImageFormat, TaskStatus


class Seed(fields.Field):
    """An integer or a string of digits (the original server took strings); -1, "" or null mean random."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value.strip() in ("", "-1"):
            return None
        if isinstance(value, bool):
            raise ValidationError("Must be an integer or a string of digits.")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        # isdecimal, not isdigit: "²" is a digit that int() refuses (it was a 500); decimal digits are what int() reads
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value.strip())
        if not isinstance(value, int):
            raise ValidationError("Must be an integer or a string of digits.")
        if value == -1:
            return None
        if not 0 <= value <= MAX_SEED:
            raise ValidationError(f"Must be between 0 and {MAX_SEED}, or -1 for a random seed.")
        return value

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class WholeNumber(fields.Integer):
    """An integer, or a string of digits; 512.5 is refused rather than silently truncated."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Format(fields.String):
    """JPEG, PNG or WEBP, in any case ("jpg" too)."""

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs).strip().upper()
        name = {"JPG": "JPEG"}.get(name, name)
        try:
            return ImageFormat(name)
        except ValueError:
            raise ValidationError("Must be one of JPEG, PNG, WEBP.") from None


def limits() -> dict:
    return current_app.config["MFLUX_LIMITS"]


# What `str.isspace()` (and so `strip()`) counts as white space, spelled out: regex `\s` differs between Python,
# ECMAScript and Rust (U+001C-U+001F, U+FEFF), and the document must say exactly what the server refuses.
_SPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\u0000]*$"
NOT_BLANK_NO_NUL = rf"^[^\u0000]*[^{_SPACE}\u0000][^\u0000]*$"


DEFAULT_SIDE = 1024


def default_side(limit: dict) -> int:
    return max(limit["min_side"], min(DEFAULT_SIDE, limit["max_side"]))


def document_limits(components: dict, limit: dict) -> None:
    """Write the configured limits into the request schema of the OpenAPI document (they are set at start-up,
    `--max-side`, `--max-steps`, so the static schema cannot carry them); without them the document promised
    that any integer width would do."""
    properties = components["GenerateRequest"]["properties"]
    properties["prompt"].update(minLength=1, maxLength=limit["max_prompt_chars"], pattern=NOT_BLANK_NO_NUL)
    properties["negative_prompt"].update(maxLength=limit["max_prompt_chars"], pattern=NO_NUL)
    for side in ("width", "height"):
        properties[side].update(minimum=limit["min_side"], maximum=limit["max_side"], default=default_side(limit))
    properties["steps"].update(minimum=1, maximum=limit["max_steps"])


class GenerateRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # the original web UI sends fields we do not use (e.g. "init_image": null)

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
    # Absent: DEFAULT_SIDE, or --max-side if that is smaller (a fixed 1024 refused `{"prompt": ...}` alone there).
    width = WholeNumber(load_default=None, metadata={"description": "Rounded down to a multiple of 16."})
    height = WholeNumber(load_default=None, metadata={"description": "Rounded down to a multiple of 16."})
    steps = WholeNumber(
        load_default=None, allow_none=True, metadata={"description": "Denoising steps; default per model."}
    )
    guidance = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0.0, 30.0),
        metadata={"description": "Guidance scale; default per model, ignored by models without it."},
    )
    format = Format(load_default=ImageFormat.JPEG, metadata={"enum": [f.value for f in ImageFormat]})
    quality = WholeNumber(load_default=85, validate=validate.Range(1, 100), metadata={"description": "JPEG/WEBP."})
    priority = fields.Boolean(load_default=False, metadata={"description": "Go ahead of every normal waiting task."})
    init_image = fields.Raw(
        load_default=None,
        allow_none=True,
        metadata={"description": "Image-to-image is not supported; send null.", "enum": [None]},
    )

    @validates_schema
    def _within_limits(self, data: dict, **kwargs) -> None:
        errors = prompt_errors(data) | size_and_steps_errors(data)
        if data.get("init_image") is not None:
            errors["init_image"] = ["Image-to-image is not supported by this server; send null or leave it out."]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _to_request(self, data: dict, **kwargs) -> GenerationRequest:
        data.pop("init_image", None)
        for side in ("width", "height"):
            if data[side] is None:
                data[side] = default_side(limits())
        return GenerationRequest(**data)


def size_and_steps_errors(data: dict) -> dict[str, list[str]]:
    """What is wrong with `width`, `height` and `steps`, against this server's limits."""
    limit = limits()
    errors: dict[str, list[str]] = {}
    for side in ("width", "height"):
        value = data.get(side)
        if value is not None and not limit["min_side"] <= value <= limit["max_side"]:
            errors[side] = [f"Must be between {limit['min_side']} and {limit['max_side']} pixels."]
    steps = data.get("steps")
    if steps is not None and not 1 <= steps <= limit["max_steps"]:
        errors["steps"] = [f"Must be between 1 and {limit['max_steps']}."]
    return errors


def prompt_errors(data: dict) -> dict[str, list[str]]:
    """What is wrong with `prompt` and `negative_prompt`, judged alike by /api, /v1 and /sdapi."""
    max_chars = limits()["max_prompt_chars"]
    errors: dict[str, list[str]] = {}
    prompt = data.get("prompt")
    if prompt is not None and not prompt.strip():
        errors["prompt"] = ["Must not be empty."]
    elif prompt is not None and (problem := _text_problem(prompt, max_chars)):
        errors["prompt"] = [problem]
    negative = data.get("negative_prompt")
    if negative and (problem := _text_problem(negative, max_chars)):
        errors["negative_prompt"] = [problem]
    return errors


def _text_problem(text: str, max_chars: int) -> str | None:
    """Why a prompt cannot be stored and handed to a model as it is, or None.

    Any Unicode is accepted, control characters included (they are stored and written into the image's
    metadata verbatim), except NUL, which C-level consumers (tokenizers, PNG text chunks, terminals) treat as
    the end of the string, and unpaired surrogates, which JSON can carry (`"\\ud800"`) but UTF-8 cannot: SQLite
    refused them with an exception, a 500.
    """
    if len(text) > max_chars:
        return f"Must be at most {max_chars} characters."
    if "\x00" in text:
        return "Must not contain NUL characters (U+0000)."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"Must be valid Unicode: unpaired surrogate U+{ord(text[error.start]):04X} at character {error.start}."
    return None


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


class ErrorSchema(SmorestErrorSchema):
    """Every error body; documented so that clients (and the fuzzer) can rely on its shape."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    status = fields.String(required=True, metadata={"description": "The HTTP reason phrase."})
    message = fields.String(required=True, metadata={"description": "What went wrong; names the field if one did."})
    task_status = fields.String(
        metadata={"enum": [s.value for s in TaskStatus], "description": "/api/image: why there is no image."}
    )


class ImageArgsSchema(TaskIdSchema):
    base64 = fields.Boolean(load_default=False, metadata={"description": "Answer with base64 text, not bytes."})
    delete = fields.Boolean(load_default=True, metadata={"description": "Forget the image once fetched (default)."})


class CancelResponseSchema(Schema):
    task_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "The task's status now."})
    previous_status = fields.String(required=True)
    cancelled = fields.Boolean(required=True, metadata={"description": "False if it had already ended."})


class ClearResponseSchema(Schema):
    cancelled = fields.Integer(required=True, metadata={"description": "How many tasks were cancelled."})
    task_ids = fields.List(fields.String(), required=True)


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


class InfoSchema(Schema):
    version = fields.String(required=True)
    engine = fields.String(required=True)
    model = fields.String(required=True)
    label = fields.String(required=True)
    demo = fields.Boolean(required=True)
    default_steps = fields.Integer(required=True)
    default_guidance = fields.Float(required=True)
    guidance_adjustable = fields.Boolean(required=True)
    supports_negative_prompt = fields.Boolean(required=True)
    size_step = fields.Integer(required=True)
    min_side = fields.Integer(required=True)
    max_side = fields.Integer(required=True)
    max_steps = fields.Integer(required=True)
    max_prompt_chars = fields.Integer(required=True)
    formats = fields.List(fields.String(), required=True)
    previews = fields.Boolean(required=True)
    auth_required = fields.Boolean(required=True)
