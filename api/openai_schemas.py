"""Request and response schemas of the OpenAI-compatible /v1 endpoints (OpenAI's field names and values)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import current_app
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from api.context import service
from api.schemas import default_side, limits, prompt_errors
from taskqueue.tasks import ImageFormat

SIZE_PATTERN = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
# OpenAI's own model names. Chat programs send one of them by default (Open WebUI: dall-e-2), so they are
# accepted as names for whatever model this server runs instead of being refused.
OPENAI_MODEL_NAMES = re.compile(r"^(dall-e-\d+|gpt-image-[\w.-]+|chatgpt-image-[\w.-]+)$", re.IGNORECASE)
# Quality words of dall-e-3 (standard, hd) and gpt-image (low … max) as our JPEG/WEBP encoding quality.
QUALITY_WORDS = {"low": 60, "medium": 80, "standard": 85, "auto": 85, "high": 92, "hd": 95, "xhigh": 95, "max": 98}
FORMATS = {"png": ImageFormat.PNG, "jpeg": ImageFormat.JPEG, "jpg": ImageFormat.JPEG, "webp": ImageFormat.WEBP}


def served_model_names() -> list[str]:
    """The names under which the loaded model is listed (the first is its own)."""
    return [service().info.model]


def is_served_model(name: str) -> bool:
    own = {n.lower() for n in served_model_names()}
    return name.lower() in own or bool(OPENAI_MODEL_NAMES.match(name))


@dataclass(frozen=True)
class ImagesRequest:
    prompt: str
    n: int
    width: int
    height: int
    response_format: str  # "url" or "b64_json"
    format: ImageFormat
    quality: int


def _parse_size(text: str | None) -> tuple[int, int]:
    """A size: "WxH" or "auto" (or absent); raises ValidationError with a message that says what is allowed."""
    limit = limits()
    allowed = f"'auto' or 'WIDTHxHEIGHT' with each side between {limit['min_side']} and {limit['max_side']} pixels"
    if text is None or text.strip().lower() in ("", "auto"):
        return default_side(limit), default_side(limit)  # 1024 (OpenAI's default) within the server's limits
    match = SIZE_PATTERN.match(text)
    if not match:
        raise ValidationError(f"Invalid size {text!r}: use {allowed}.")
    width, height = int(match.group(1)), int(match.group(2))
    if not all(limit["min_side"] <= side <= limit["max_side"] for side in (width, height)):
        raise ValidationError(f"Unsupported size {text!r}: use {allowed}.")
    return width, height


def _parse_quality(value: object) -> int:
    if isinstance(value, bool):
        raise ValidationError("Must be one of low, medium, high, auto, standard, hd, or an integer 1-100.")
    if isinstance(value, str) and value.strip().lower() in QUALITY_WORDS:
        return QUALITY_WORDS[value.strip().lower()]
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= 100:
        return value
    raise ValidationError("Must be one of low, medium, high, auto, standard, hd, or an integer 1-100.")


class ImageGenerationSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # style, background, moderation, user, …: accepted and ignored

    prompt = fields.String(required=True, metadata={"example": "A lighthouse at dusk, oil painting"})
    model = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "The loaded model's name; OpenAI's names (dall-e-2, dall-e-3, gpt-image-1, …) "
                  "are accepted too and mean the same model. Absent: the loaded model."},
    )  # fmt: skip
    n = fields.Integer(load_default=1, allow_none=True, metadata={"description": "How many images (1 to the cap)."})
    size = fields.String(
        load_default="auto", allow_none=True, metadata={"description": "'WIDTHxHEIGHT' or 'auto' (1024x1024)."}
    )
    response_format = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(["url", "b64_json"]),
        metadata={"description": "Default: b64_json for gpt-image-* model names, url otherwise (as OpenAI)."},
    )
    output_format = fields.String(
        load_default="png", allow_none=True, validate=validate.OneOf(sorted(FORMATS)), metadata={"example": "png"}
    )
    output_compression = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(0, 100), metadata={"description": "JPEG/WEBP."}
    )
    quality = fields.Raw(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "low|medium|high|auto|standard|hd|xhigh|max or 1-100: the JPEG/WEBP encoding quality.",
            "anyOf": [
                {"type": "string", "enum": sorted(QUALITY_WORDS)},
                {"type": "integer", "minimum": 1, "maximum": 100},
            ],
        },
    )
    user = fields.String(load_default=None, allow_none=True, metadata={"description": "Ignored."})

    @validates_schema
    def _check(self, data: dict, **kwargs) -> None:
        errors = prompt_errors(data)
        model = data.get("model")
        if model and not is_served_model(model):
            errors["model"] = [
                f"The model {model!r} is not served here. This server runs {served_model_names()[0]!r}; "
                "OpenAI's model names (dall-e-2, dall-e-3, gpt-image-1, …) are accepted as aliases for it."
            ]
        cap = current_app.config["MFLUX_MAX_IMAGES_PER_REQUEST"]
        n = data.get("n")
        if n is not None and not 1 <= n <= cap:
            errors["n"] = [f"Must be between 1 and {cap} (this server's limit per request)."]
        for name, parse in (("size", _parse_size), ("quality", _parse_quality)):
            if data.get(name) is not None:
                try:
                    parse(data[name])
                except ValidationError as error:
                    errors[name] = error.messages
        if errors:
            raise ValidationError(errors)

    @post_load
    def _to_request(self, data: dict, **kwargs) -> ImagesRequest:
        width, height = _parse_size(data.get("size"))
        model = data.get("model") or ""
        response_format = data.get("response_format") or (
            "b64_json" if model.lower().startswith("gpt-image") else "url"
        )
        quality = _parse_quality(data["quality"]) if data.get("quality") is not None else 85
        if data.get("output_compression") is not None:
            quality = max(1, data["output_compression"])
        return ImagesRequest(
            prompt=data["prompt"],
            n=data.get("n") or 1,
            width=width,
            height=height,
            response_format=response_format,
            format=FORMATS[(data.get("output_format") or "png").lower()],
            quality=quality,
        )


class ImageSchema(Schema):
    b64_json = fields.String(metadata={"description": "The image, base64 (response_format=b64_json)."})
    url = fields.String(metadata={"description": "Where to fetch it on this server (response_format=url)."})


class ImagesResponseSchema(Schema):
    created = fields.Integer(required=True, metadata={"description": "Unix time."})
    data = fields.List(fields.Nested(ImageSchema), required=True)
    output_format = fields.String(metadata={"example": "png"})
    size = fields.String(metadata={"description": "The size made (sides rounded down to multiples of 16)."})


class ModelSchema(Schema):
    id = fields.String(required=True, metadata={"example": "schnell"})
    object = fields.String(required=True, metadata={"example": "model"})
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True, metadata={"example": "mflux-server"})


class ModelListSchema(Schema):
    object = fields.String(required=True, metadata={"example": "list"})
    data = fields.List(fields.Nested(ModelSchema), required=True)
