"""The limits and request rules, in one place: what the server accepts, and how a request becomes parameters.

`TaskService.submit` enforces these on every request, whoever makes it (an HTTP API or a Python caller), and
every API's translation layer maps the problems back onto its own field names. The OpenAPI documents write
the same ranges (`ranges`), so a limit is declared once: a `Limits` field, and the rule that reads it here.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.models import QUANTIZE_BITS, ModelInfo, ModelKind
from core.submissions import Caller, GenerationRequest
from core.tasks import GenerationParams

MAX_SEED = 2**32 - 1  # mflux seeds mx.random with it; keep it in the range every engine accepts
MAX_GUIDANCE = 30.0
DEFAULT_SIDE = 1024  # what FLUX-class models are made for (and OpenAI's default size)
DEFAULT_IMAGE_STRENGTH = 0.4  # img2img: as the original server (mflux's image_strength: the share of the image kept)
UPSCALE_FACTOR = 2  # an upscale that names no size doubles the picture
TEXT_BODY_BYTES = 256 * 1024  # a request without images is a few kB; anything beyond this is refused
MAX_CALLBACK_URL_CHARS = 2048  # what every HTTP stack carries in a request line; a webhook URL needs far less


def option(help_text: str) -> dict:
    """Field metadata that makes a `Limits` field a command-line option of the server (see server.py)."""
    return {"help": help_text}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how much may wait. Fields with help text are server options."""

    min_side: int = 64
    max_side: int = field(default=2560, metadata=option("largest width or height accepted, in pixels"))
    max_pixels: int = field(default=2560 * 2560, metadata=option("largest width × height accepted, in pixels"))
    max_steps: int = field(default=100, metadata=option("most denoising steps accepted"))
    max_prompt_chars: int = field(default=4000, metadata=option("longest prompt accepted, in characters"))
    max_images_per_request: int = field(default=4, metadata=option("most images one OpenAI or A1111 call may ask for"))
    max_waiting: int = field(default=10_000, metadata=option("most waiting tasks overall (more: 429)"))
    max_waiting_per_client: int = field(default=1_000, metadata=option("most waiting tasks per client (more: 429)"))
    max_input_mb: float = field(default=10.0, metadata=option("largest input image file accepted, in MB"))
    max_input_side: int = field(default=4096, metadata=option("largest width or height of an input image, in pixels"))
    max_input_images: int = field(default=4, metadata=option("most input images (init and reference images) per task"))

    @property
    def default_side(self) -> int:
        """DEFAULT_SIDE, or the nearest side these limits allow."""
        return max(self.min_side, min(DEFAULT_SIDE, self.max_side))

    def clamp_side(self, side: int) -> int:
        return max(self.min_side, min(side, self.max_side))

    @property
    def max_input_bytes(self) -> int:
        return int(self.max_input_mb * 1024 * 1024)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body with images: every input image and a mask as base64, and room for the rest."""
        return TEXT_BODY_BYTES + (self.max_input_images + 1) * (self.max_input_bytes * 4 // 3 + 4)


def options() -> Iterator[dataclasses.Field]:
    """The `Limits` fields that are command-line options, in declaration order."""
    return (f for f in dataclasses.fields(Limits) if "help" in f.metadata)


def ranges(limits: Limits) -> dict[str, tuple[float, float]]:
    """The inclusive range of each numeric field of a GenerationRequest."""
    return {
        "width": (limits.min_side, limits.max_side),
        "height": (limits.min_side, limits.max_side),
        "steps": (1, limits.max_steps),
        "guidance": (0.0, MAX_GUIDANCE),
        "quality": (1, 100),
        "seed": (0, MAX_SEED),
    }


UNITS = {"width": " pixels", "height": " pixels"}


def range_problem(name: str, value: float, limits: Limits) -> str | None:
    low, high = ranges(limits)[name]
    if low <= value <= high:
        return None
    if name == "seed":
        return f"Must be between 0 and {MAX_SEED}, or -1 for a random seed."
    return f"Must be between {low:g} and {high:g}{UNITS.get(name, '')}."


def text_problem(text: str, limits: Limits, *, required: bool) -> str | None:
    """Why a prompt cannot be stored and handed to a model as it is, or None.

    Any Unicode is accepted, control characters included (they are stored and written into the image's
    metadata verbatim), except NUL, which C-level consumers (tokenizers, PNG text chunks, terminals) treat as
    the end of the string, and unpaired surrogates, which JSON can carry (`"\\ud800"`) but UTF-8 cannot: SQLite
    refused them with an exception, a 500.
    """
    if required and not text.strip():
        return "Must not be empty."
    if len(text) > limits.max_prompt_chars:
        return f"Must be at most {limits.max_prompt_chars} characters."
    if "\x00" in text:
        return "Must not contain NUL characters (U+0000)."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"Must be valid Unicode: unpaired surrogate U+{ord(text[error.start]):04X} at character {error.start}."
    return None


def request_problems(
    request: GenerationRequest, limits: Limits, model: ModelInfo | None = None
) -> dict[str, list[str]]:
    """Everything wrong with a request, by field; empty when it may be queued. With `model`, also what that
    model cannot do (its own size limits, image inputs)."""
    problems: dict[str, list[str]] = {}
    prompt_required = model is None or model.kind is not ModelKind.UPSCALE  # an upscaler needs no prompt
    if problem := text_problem(request.prompt, limits, required=prompt_required):
        problems["prompt"] = [problem]
    if request.negative_prompt and (problem := text_problem(request.negative_prompt, limits, required=False)):
        problems["negative_prompt"] = [problem]
    for name in ranges(limits):
        value = getattr(request, name)
        if value is not None and (problem := range_problem(name, value, limits)):
            problems[name] = [problem]
    pixels = (request.width or limits.default_side) * (request.height or limits.default_side)
    if pixels > limits.max_pixels and not problems.keys() & {"width", "height"}:
        problems["width"] = [f"width × height is {pixels:,} pixels; this server makes at most {limits.max_pixels:,}."]
    if request.quantize is not None and request.quantize not in QUANTIZE_BITS:
        problems["quantize"] = [f"Must be one of {', '.join(map(str, QUANTIZE_BITS))} bits, or absent."]
    for index, lora in enumerate(request.loras):
        if not -4.0 <= lora.scale <= 4.0:
            problems[f"loras.{index}.scale"] = ["Must be between -4 and 4."]
    if request.callback_url is not None and (problem := callback_url_problem(request.callback_url)):
        problems["callback_url"] = [problem]
    if model is not None:
        problems = model_problems(request, limits, model) | problems
    return problems


def callback_url_problem(url: str) -> str | None:
    """Why a webhook URL cannot be used, judged by its text alone; or None.

    Where it points is judged when its host is resolved (taskqueue/egress.py), at submission and again at every
    delivery: the text of a host says little (`127.1`, `2130706433` and `0x7f.1` are all 127.0.0.1).
    """
    if len(url) > MAX_CALLBACK_URL_CHARS:
        return f"Must be at most {MAX_CALLBACK_URL_CHARS} characters."
    # One unambiguous spelling: parsers disagree about spaces, backslashes and non-ASCII hosts, and the host that
    # is vetted must be the host that is connected to.
    if not url.isascii() or any(char.isspace() or not char.isprintable() or char == "\\" for char in url):
        return "Must be ASCII without spaces, control characters or backslashes (percent-encode; punycode hosts)."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"Is not a valid URL ({error})."
    if parts.scheme not in ("http", "https"):
        return "Must be an http:// or https:// URL."
    if not parts.hostname:
        return "Must name a host, as in https://example.com/hook."
    if "@" in parts.netloc:
        return "Must not carry a user name or password; put a token in the path or query instead."
    if port == 0:
        return "Must not name port 0."
    return None


def side_range(model: ModelInfo, limits: Limits) -> tuple[int, int]:
    """The widths and heights this server makes with this model: its own rule within the server's limits."""
    return max(model.min_side, limits.min_side), min(model.max_side or limits.max_side, limits.max_side)


def model_problems(request: GenerationRequest, limits: Limits, model: ModelInfo) -> dict[str, list[str]]:
    """What this model cannot do that the request asks for (beyond the server's own limits)."""
    problems: dict[str, list[str]] = {}
    low, high = side_range(model, limits)
    for side in ("width", "height"):
        value = getattr(request, side) or limits.default_side
        if not low <= value <= high and limits.min_side <= value <= limits.max_side:
            problems[side] = [f"The model {model.name} makes sides from {low} to {high} pixels."]
    return image_problems(request, limits, model) | problems


def image_problems(request: GenerationRequest, limits: Limits, model: ModelInfo) -> dict[str, list[str]]:
    """What is wrong with the images a request brings (or lacks) for this model, before any is decoded."""
    count, name = len(request.init_images), model.name
    field = "init_image" if count <= 1 else "init_images"
    strength, mask = request.image_strength, request.mask
    if mask is not None and mask.if_transparent:  # OpenAI's "the image's own transparency": known once decoded
        mask = None
    problems: dict[str, list[str]] = {}
    if count > limits.max_input_images:
        problems[field] = [f"Brings {count} images; this server takes at most {limits.max_input_images} a task."]
    if strength is not None and not 0.0 <= strength <= 1.0:
        problems["image_strength"] = ["Must be between 0 and 1 (the share of the init image kept)."]
    if mask is not None and not 0 <= mask.blur <= 256:
        problems["mask_blur"] = ["Must be between 0 and 256 pixels."]
    if mask is not None and mask.crop_padding is not None and not 0 <= mask.crop_padding <= 4096:
        problems["inpaint_full_res_padding"] = ["Must be between 0 and 4096 pixels."]
    if count == 0:
        if model.needs_image:
            what = {ModelKind.EDIT: "edits", ModelKind.INPAINT: "repaints", ModelKind.UPSCALE: "upscales"}[model.kind]
            problems["init_image"] = [f"The model {name} {what} an image: send one (init_image or init_images)."]
        if mask is not None:
            problems["mask_image"] = ["A mask says what to repaint of an init image: send the init image too."]
        if strength is not None:
            problems["image_strength"] = ["Applies to an init image: send one, or leave image_strength out."]
        return problems
    if model.kind is ModelKind.TEXT_TO_IMAGE and not model.img2img:
        problems[field] = [f"The model {name} makes images from text alone; models that start from an image: "
                           "GET /api/ls (img2img, or kind edit)."]  # fmt: skip
    elif model.kind is ModelKind.EDIT and count > model.max_references:
        problems[field] = [f"The model {name} takes at most {model.max_references} reference image(s)."]
    elif model.kind is not ModelKind.EDIT and count > 1:
        problems[field] = [f"The model {name} takes one image; only edit models take several."]
    if strength is not None and model.kind is not ModelKind.TEXT_TO_IMAGE:
        problems["image_strength"] = [f"The model {name} ({model.kind.value}) does not start part-way from the "
                                      "image: leave image_strength out."]  # fmt: skip
    if model.kind is ModelKind.INPAINT and request.mask is None:
        problems["mask_image"] = [f"The model {name} repaints the masked area of an image: send a mask."]
    if model.kind is ModelKind.UPSCALE and mask is not None:
        problems["mask_image"] = [f"The model {name} upscales the whole image: it takes no mask."]
    return problems


def default_model_problem(model: ModelInfo) -> str | None:
    """Why a model cannot be the default, which every request that names no model runs (chat programs send
    prompts alone): it must make images from text."""
    if not model.needs_image:
        return None
    return (f"The model {model.name} ({model.kind.value}) needs an input image, so it cannot be the default for "
            "requests that name no model; name it in the requests that bring an image.")  # fmt: skip


def output_size(
    request: GenerationRequest, limits: Limits, model: ModelInfo, source: tuple[int, int] | None
) -> tuple[int, int]:
    """Width and height to make: as asked; else from the input picture (doubled for an upscale), within the
    limits and the model's sides, keeping its aspect ratio; else the default."""
    if source is None or (request.width is not None and request.height is not None):
        width = request.width if request.width is not None else limits.default_side
        height = request.height if request.height is not None else limits.default_side
        return model.round_size(width), model.round_size(height)
    width, height = source
    if model.kind is ModelKind.UPSCALE:
        width, height = width * UPSCALE_FACTOR, height * UPSCALE_FACTOR
    if request.width is not None:  # one side asked for: the other follows the picture's shape
        width, height = request.width, round(request.width * height / width)
    elif request.height is not None:
        width, height = round(request.height * width / height), request.height
    low, high = side_range(model, limits)
    scale = min(1.0, high / max(width, height), (limits.max_pixels / (width * height)) ** 0.5)
    scale = max(scale, low / min(width, height))
    return model.round_size(round(width * scale)), model.round_size(round(height * scale))


def count_problem(count: int, limits: Limits) -> str | None:
    """Why one call may not ask for `count` images, or None."""
    cap = limits.max_images_per_request
    if 1 <= count <= cap:
        return None
    if count < 1:
        return "Must ask for at least one image."
    return f"Asks for {count} images; this server makes at most {cap} per request."


def waiting_cap(caller: Caller, limits: Limits) -> int:
    """Most tasks one client may have waiting: its key's own cap (keys file), else --max-waiting-per-client."""
    return caller.max_waiting if caller.max_waiting is not None else limits.max_waiting_per_client


# -- who sees what: the one rule, read by the service for every lookup, listing, fetch and cancel -------------


def visible_owner(caller: Caller) -> str | None:
    """The one owner (key name) whose tasks a caller may see in full, fetch, follow and cancel; None: every task.

    An admin (the single --api-key, an admin key of the keys file, and every client of a server without keys)
    sees all; a user key sees its own tasks, and everyone else's only as anonymous entries of the queue."""
    return None if caller.admin else caller.owner


def may_see(caller: Caller, owner: str) -> bool:
    """Whether a task of `owner` is the caller's to see, fetch, follow and cancel (else: as if unknown)."""
    visible = visible_owner(caller)
    return visible is None or visible == owner


def may_manage_server(caller: Caller) -> bool:
    """Whether a caller may change what every client gets (the default model): an admin only."""
    return caller.admin


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def to_params(
    request: GenerationRequest, limits: Limits, model: ModelInfo, source: tuple[int, int] | None = None
) -> GenerationParams:
    """The parameters an engine runs, from a request that has no problems: the model's defaults filled in, sizes
    rounded as the model does, and what the model would ignore left out (so the task says what really ran).
    `source` is the size of the request's first input image, if it has one; core/inputs.py names the files."""
    guidance = request.guidance
    if guidance is None or not model.guidance_adjustable:
        guidance = model.default_guidance
    steps = request.steps if request.steps is not None and not model.steps_fixed else model.default_steps
    negative = request.negative_prompt if model.uses_negative_prompt(guidance) else None
    width, height = output_size(request, limits, model, source)
    img2img = source is not None and model.kind is ModelKind.TEXT_TO_IMAGE
    strength = request.image_strength if request.image_strength is not None else DEFAULT_IMAGE_STRENGTH
    return GenerationParams(
        prompt=request.prompt,
        seed=request.seed if request.seed is not None else random_seed(),
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        negative_prompt=negative or None,
        image_strength=strength if img2img else None,
    )


# What `str.isspace()` (and so `strip()`) counts as white space, spelled out: regex `\s` differs between Python,
# ECMAScript and Rust (U+001C-U+001F, U+FEFF), and the API documents must say exactly what `text_problem` refuses.
_SPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT_PATTERN = r"^[^\u0000]*$"
REQUIRED_TEXT_PATTERN = rf"^[^\u0000]*[^{_SPACE}\u0000][^\u0000]*$"
