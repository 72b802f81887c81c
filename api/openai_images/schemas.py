"""Request and response schemas of the OpenAI-compatible /v1 endpoints (OpenAI's field names and values)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from api.context import service
from api.fields import BASE64_IMAGE_DOC, Base64Image
from core.rules import MAX_CALLBACK_URL_CHARS
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
    """Every model this server offers, the default first."""
    tasks = service()
    default = tasks.default_model.name
    return [default, *(m.info.name for m in tasks.models() if m.offered and m.info.name != default)]


def is_openai_name(name: str) -> bool:
    return bool(_OPENAI_MODEL.match(name))


def model_named(name: str) -> str | None:
    """The model a request's `model` means: one of ours (by name or alias), or None for OpenAI's own names
    (the server's default model). Raises ValidationError for anything else."""
    if is_openai_name(name):
        return None
    model = service().find_model(name)
    if model is None:
        raise ValidationError(
            f"The model {name!r} is not served here. This server offers {', '.join(served_model_names())}; "
            "OpenAI's model names (dall-e-2, dall-e-3, gpt-image-1, …) mean its default model."
        )
    return model.name


@dataclass(frozen=True)
class ImagesRequest:
    prompt: str
    model: str | None  # one of ours; None: the server's default
    n: int
    width: int | None  # None: the server's default (or, for an edit, the image's size)
    height: int | None
    response_format: str  # "url" or "b64_json"
    format: ImageFormat
    quality: int
    callback_url: str | None = None  # our extension: a webhook per image
    stream: bool = False
    partial_images: int = 0
    size_text: str = "auto"  # as asked, for the stream's events
    quality_text: str = "auto"
    background: str = "auto"
    images: tuple[bytes, ...] = ()  # edits: the pictures, the first one edited (and masked)
    mask: bytes | None = None  # edits: transparent where the first picture is edited
    image_strength: float | None = None  # our extension: img2img's share of the image kept

    @property
    def output_format(self) -> str:
        return {ImageFormat.JPEG: "jpeg", ImageFormat.PNG: "png", ImageFormat.WEBP: "webp"}[self.format]


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
    """A model of ours, or one of OpenAI's names (which mean the default); checked, kept as sent."""

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        if name:
            model_named(name)
        return name


class ImageRequestSchema(Schema):
    """The fields generations and edits share."""

    class Meta:
        unknown = EXCLUDE  # moderation, user, input_fidelity, …: accepted and ignored

    prompt = fields.String(required=True, metadata={"example": "A lighthouse at dusk, oil painting"})
    model = Model(
        load_default=None,
        allow_none=True,
        metadata={"description": "A model this server offers (GET /v1/models), by name or alias; OpenAI's names "
                  "(dall-e-2, dall-e-3, gpt-image-1, …) mean the server's default model, as does no model."},
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
    background = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(["auto", "opaque"], error="This server's models make opaque images: use auto or "
                                "opaque."),
        metadata={"description": "auto or opaque (these models cannot make a transparent background)."},
    )  # fmt: skip
    stream = fields.Boolean(
        load_default=False,
        allow_none=True,
        metadata={"description": "Server-Sent Events: partial images, then each image."},
    )
    partial_images = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 3),
        metadata={
            "description": "With stream: up to this many partial images per image, from its previews "
            "(without a stream there is nothing to show them in, and they are not made)."
        },
    )
    user = fields.String(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    callback_url = fields.String(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "mflux-server's extension: a webhook URL, POSTed each image's outcome when it ends, as "
            "for POST /api/generate.",
            "maxLength": MAX_CALLBACK_URL_CHARS,
        },
    )

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
            model=model_named(model) if model else None,
            n=data["n"] if data.get("n") is not None else 1,
            width=width,
            height=height,
            response_format=response_format,
            format=FORMATS[(data.get("output_format") or "png").lower()],
            quality=quality,
            callback_url=data.get("callback_url"),
            stream=bool(data.get("stream")),
            partial_images=data.get("partial_images") or 0,
            size_text=f"{width}x{height}" if width else "auto",
            quality_text=_quality_word(data.get("quality")),
            background=data.get("background") or "auto",
            **self._images(data),
        )

    def _images(self, data: dict) -> dict:
        return {}


def _quality_word(quality: int | None) -> str:
    """The quality word an event reports (OpenAI's type allows only words)."""
    words = {60: "low", 80: "medium", 92: "high"}
    return words.get(quality, "auto") if quality is not None else "auto"


class ImageGenerationSchema(ImageRequestSchema):
    """POST /v1/images/generations: JSON."""


class ImageEditFormSchema(ImageRequestSchema):
    """POST /v1/images/edits as the `openai` package sends it: multipart form fields (the files apart)."""

    image_strength = fields.Float(
        load_default=None,
        allow_none=True,
        metadata={"description": "mflux-server's extension, for text-to-image models: how much of the image is "
                  "kept, 0 to 1 (default 0.4)."},
    )  # fmt: skip

    def _images(self, data: dict) -> dict:
        return {"image_strength": data.get("image_strength")}


class ImageReferenceSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    image_url = Base64Image(
        required=True,
        metadata=BASE64_IMAGE_DOC | {"description": "A data: URL (data:image/png;base64,…); no URL is fetched."},
    )


class ImageEditJsonSchema(ImageEditFormSchema):
    """POST /v1/images/edits with a JSON body, as OpenAI's API also takes it: images as data URLs."""

    images = fields.List(fields.Nested(ImageReferenceSchema), required=True, validate=validate.Length(min=1))
    mask = fields.Nested(ImageReferenceSchema, load_default=None, allow_none=True)

    def _images(self, data: dict) -> dict:
        mask = data.get("mask")
        return {
            "images": tuple(item["image_url"] for item in data["images"]),
            "mask": mask["image_url"] if mask else None,
            "image_strength": data.get("image_strength"),
        }


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
