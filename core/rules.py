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

from core.engines import EngineInfo
from core.submissions import GenerationRequest
from core.tasks import GenerationParams

MAX_SEED = 2**32 - 1  # mflux seeds mx.random with it; keep it in the range every engine accepts
MAX_GUIDANCE = 30.0
DEFAULT_SIDE = 1024  # what FLUX-class models are made for (and OpenAI's default size)


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

    @property
    def default_side(self) -> int:
        """DEFAULT_SIDE, or the nearest side these limits allow."""
        return max(self.min_side, min(DEFAULT_SIDE, self.max_side))

    def clamp_side(self, side: int) -> int:
        return max(self.min_side, min(side, self.max_side))


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


def request_problems(request: GenerationRequest, limits: Limits) -> dict[str, list[str]]:
    """Everything wrong with a request, by field; empty when it may be queued."""
    problems: dict[str, list[str]] = {}
    if problem := text_problem(request.prompt, limits, required=True):
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
    return problems


def count_problem(count: int, limits: Limits) -> str | None:
    """Why one call may not ask for `count` images, or None."""
    cap = limits.max_images_per_request
    if 1 <= count <= cap:
        return None
    if count < 1:
        return "Must ask for at least one image."
    return f"Asks for {count} images; this server makes at most {cap} per request."


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def to_params(request: GenerationRequest, limits: Limits, info: EngineInfo) -> GenerationParams:
    """The parameters an engine runs, from a request that has no problems: defaults filled in, sizes rounded."""
    guidance = request.guidance
    if guidance is None or not info.guidance_adjustable:
        guidance = info.default_guidance
    return GenerationParams(
        prompt=request.prompt,
        seed=request.seed if request.seed is not None else random_seed(),
        width=info.round_size(request.width if request.width is not None else limits.default_side),
        height=info.round_size(request.height if request.height is not None else limits.default_side),
        steps=request.steps if request.steps is not None else info.default_steps,
        guidance=guidance,
        negative_prompt=request.negative_prompt or None,
    )


# What `str.isspace()` (and so `strip()`) counts as white space, spelled out: regex `\s` differs between Python,
# ECMAScript and Rust (U+001C-U+001F, U+FEFF), and the API documents must say exactly what `text_problem` refuses.
_SPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT_PATTERN = r"^[^\u0000]*$"
REQUIRED_TEXT_PATTERN = rf"^[^\u0000]*[^{_SPACE}\u0000][^\u0000]*$"
