"""What a client asks for, in the one shape every API translates into."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from core.tasks import ImageFormat


class MaskMeaning(StrEnum):
    """How a mask says where to repaint: each API's convention, translated in one place (core/inputs.py)."""

    WHITE = "white"  # white (or opaque, in an RGBA mask) repaints: ours and A1111's
    TRANSPARENT = "transparent"  # transparent pixels repaint: OpenAI's (a mask, or the image's own alpha)


class Resize(IntEnum):
    """How an input image is brought to the output size: A1111's resize_mode, whose numbers it keeps."""

    STRETCH = 0  # just resize
    CROP = 1  # keep the aspect ratio, fill the size, crop the overflow (centred)
    FILL = 2  # keep the aspect ratio, fit inside, fill the rest by stretching the edge pixels


class MaskedContent(IntEnum):
    """What the masked area starts from: A1111's inpainting_fill, whose numbers it keeps (done in pixels here)."""

    FILL = 0  # the surrounding colours, blurred in
    ORIGINAL = 1  # the picture as it is
    NOISE = 2  # random noise
    NOTHING = 3  # flat grey (a zero latent)


@dataclass(frozen=True)
class MaskRequest:
    """A mask as sent: the encoded image file and the convention it follows."""

    data: bytes
    meaning: MaskMeaning = MaskMeaning.WHITE
    invert: bool = False  # A1111's inpainting_mask_invert: repaint what the mask keeps
    blur: int = 0  # pixels of feathering where the repainted area meets the rest
    content: MaskedContent = MaskedContent.ORIGINAL
    crop_padding: int | None = None  # A1111's inpaint_full_res: repaint only the masked area, at full size
    if_transparent: bool = False  # OpenAI without a mask: the image's own transparency, if it has any


@dataclass(frozen=True)
class LoraRequest:
    """A LoRA from the server's LoRA library, by name (never a path), and how strongly to apply it."""

    name: str
    scale: float = 1.0


@dataclass(frozen=True)
class GenerationRequest:
    """One image as a client asked for it; None means "the server's or the model's default"."""

    prompt: str
    model: str | None = None  # a model name or alias; None: the server's default model
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    format: ImageFormat = ImageFormat.JPEG
    quality: int = 85
    priority: bool = False
    quantize: int | None = None  # None: the default model's own quantization, or none for other models
    loras: tuple[LoraRequest, ...] = ()
    callback_url: str | None = None  # a webhook: POSTed the task's outcome when it ends (taskqueue/webhooks.py)
    init_images: tuple[bytes, ...] = ()  # encoded image files as sent: img2img's start, or an edit's references
    image_strength: float | None = None  # img2img: how much of the init image is kept (mflux's; A1111's 1 - x)
    mask: MaskRequest | None = None
    resize: Resize = Resize.STRETCH


@dataclass(frozen=True)
class Caller:
    """Who asks: `client` tells clients apart for per-client limits; `owner` is the name of its API key, recorded
    on its tasks ("" without named keys); `admin` may see and manage every task (core/rules.py decides who sees
    what); `max_waiting` is its key's own cap on waiting tasks, if the keys file gives one."""

    client: str = ""
    admin: bool = True
    owner: str = ""
    max_waiting: int | None = None
