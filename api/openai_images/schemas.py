"""Request and response schemas of the OpenAI-compatible /v1 endpoints (OpenAI's field names and values)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from api.context import service
from core.tasks import ImageFormat

SIZE_PATTERN = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
# OpenAI's own model names. Chat programs send one of them by default (Open WebUI: dall-e-2), so they are
# accepted as names for whatever model this server runs instead of being refused. One pattern, for the code
# (case-insensitive) and the document.
OPENAI_MODEL_NAMES = r"dall-e-[0-9]+|gpt-image-[A-Za-z0-9._-]+|chatgpt-image-[A-Za-z0-9._-]+"
_OPENAI_MODEL = re.compile(f"^({OPENAI_MODEL_NAMES})$", re.IGNORECASE)
# Quality words of dall-e-3 (standard, hd) and gpt-image (low … max) as our JPEG/WEBP encoding quality.
QUALITY_WORDS = {"low": 60, "medium": 80, "standard": 85, "auto": 85, "high": 92, "hd": 95, "xhigh": 95, "max": 98}
QUALITY_HELP = "Must be one of low, medium, high, auto, standard, hd, or an integer 1-100."
FORMATS = {"png": ImageFormat.PNG, "jpeg": ImageFormat.JPEG, "jpg": ImageFormat.JPEG, "webp": ImageFormat.WEBP}
COMMON_SIZES = ("256x256", "512x512", "768x768", "1024x1024", "1024x1536", "1536x1024", "1024x1792", "1792x1024")


def served_model_names() -> list[str]:
    """The names under which the loaded model is listed (the first is its own)."""
    return [service().info.model]


def is_served_model(name: str) -> bool:
    own = {n.lower() for n in served_model_names()}
    return name.lower() in own or bool(_OPENAI_MODEL.match(name))


@dataclass(frozen=True)
class ImagesRequest:
    prompt: str
    n: int
    width: int | None  # None: the server's default
    height: int | None
    response_format: str  # "url" or "b64_json"
    format: ImageFormat
    quality: int


class Size(fields.String):
    """'WIDTHxHEIGHT' or 'auto': parsed into (width, height), (None, None) for auto; limits are the service's."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if text.strip().lower() in ("", "auto"):
            return None, None
        match = SIZE_PATTERN.match(text)
        if not match:
            raise ValidationError(f"Invalid size {text!r}: use 'auto' or 'WIDTHxHEIGHT', e.g. '1024x1024'.")
        return int(match.group(1)), int(match.group(2))


class Quality(fields.Raw):
    """A quality word or a number 1-100, as our JPEG/WEBP encoding quality."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError(QUALITY_HELP)
        if isinstance(value, str) and value.strip().lower() in QUALITY_WORDS:
            return QUALITY_WORDS[value.strip().lower()]
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 3:
            value = int(value.strip())
        if isinstance(value, int) and 1 <= value <= 100:
            return value
        raise ValidationError(QUALITY_HELP)


class Model(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        if name and not is_served_model(name):
            raise ValidationError(
                f"The model {name!r} is not served here. This server runs {served_model_names()[0]!r}; "
                "OpenAI's model names (dall-e-2, dall-e-3, gpt-image-1, …) are accepted as aliases for it."
            )
        return name


class ImageGenerationSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # style, background, moderation, user, …: accepted and ignored

    prompt = fields.String(required=True, metadata={"example": "A lighthouse at dusk, oil painting"})
    model = Model(
        load_default=None,
        allow_none=True,
        metadata={"description": "The loaded model's name; OpenAI's names (dall-e-2, dall-e-3, gpt-image-1, …) "
                  "are accepted too and mean the same model. Absent: the loaded model."},
    )  # fmt: skip
    n = fields.Integer(load_default=1, allow_none=True, metadata={"description": "How many images (1 to the cap)."})
    size = Size(load_default=None, allow_none=True, metadata={"description": "'WIDTHxHEIGHT' or 'auto' (1024x1024)."})
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
    quality = Quality(
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

    @post_load
    def _to_request(self, data: dict, **kwargs) -> ImagesRequest:
        width, height = data.get("size") or (None, None)
        model = data.get("model") or ""
        response_format = data.get("response_format") or (
            "b64_json" if model.lower().startswith("gpt-image") else "url"
        )
        quality = data["quality"] if data.get("quality") is not None else 85
        if data.get("output_compression") is not None:
            quality = max(1, data["output_compression"])
        return ImagesRequest(
            prompt=data["prompt"],
            n=data["n"] if data.get("n") is not None else 1,
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
