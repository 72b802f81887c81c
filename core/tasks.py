"""The task: what a client asked for, and where it stands."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from core.models import Variant

MEGAPIXEL = 1024 * 1024

# Task ids are 16 lowercase hex digits; anything else is refused before it can reach SQL or a file path.
TASK_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def is_task_id(text: str) -> bool:
    return bool(TASK_ID_PATTERN.fullmatch(text))


def new_task_id() -> str:
    """64 random bits: unguessable, so that a task's id is enough to fetch its image (as in the original)."""
    return secrets.token_hex(8)


class TaskStatus(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED)


class ImageFormat(StrEnum):
    JPEG = "JPEG"
    PNG = "PNG"
    WEBP = "WEBP"

    @property
    def extension(self) -> str:
        return {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[self.value]

    @property
    def mimetype(self) -> str:
        return {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}[self.value]


@dataclass(frozen=True)
class Composite:
    """What the worker does with the engine's picture of a masked task: paste it into `base` through `mask`
    (white: the engine's pixels; grey, where it is feathered: a blend), so that what is not masked stays the
    input picture exactly. With a `box`, the engine rendered only that area, scaled up to the whole size."""

    base: str  # file name: the input picture at the output size
    mask: str  # file name: greyscale at the output size
    box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in the output

    def as_json(self) -> dict:
        return {"base": self.base, "mask": self.mask, "box": list(self.box) if self.box else None}

    @classmethod
    def from_json(cls, data: dict | None) -> Composite | None:
        if not data:
            return None
        box = data.get("box")
        return cls(data["base"], data["mask"], tuple(box) if box else None)


@dataclass(frozen=True)
class GenerationParams:
    """Everything an engine needs to produce one image, sizes already rounded to what the model can do.

    Image inputs are file names in the task's input directory (the worker is told where that is)."""

    prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance: float
    negative_prompt: str | None = None
    init_image: str | None = None  # img2img: the picture to start from
    image_strength: float | None = None  # img2img: share of the schedule skipped (mflux's image_strength)
    references: tuple[str, ...] = ()  # edit models: the pictures to change or draw from
    mask: str | None = None  # inpainting: white where the picture is repainted
    reference_pixels: int = 0  # the references' pixels, which an edit model attends to beside its own
    composite: Composite | None = None  # masked tasks: how the engine's picture joins the input (the worker's)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def megapixels(self) -> float:
        return self.pixels / MEGAPIXEL

    @property
    def work_megapixels(self) -> float:
        """What a step costs in: the picture made, and the reference pictures an edit model reads beside it."""
        return (self.pixels + self.reference_pixels) / MEGAPIXEL

    @property
    def input_pictures(self) -> int:
        """How many pictures the task starts from (0: from text alone)."""
        return len({name for name in (self.init_image, *self.references) if name})

    @property
    def masked(self) -> bool:
        return self.composite is not None or self.mask is not None

    @property
    def input_names(self) -> tuple[str, ...]:
        """The files in the task's input folder that the engine or the worker reads."""
        names = [self.init_image, *self.references, self.mask]
        if self.composite is not None:
            names += [self.composite.base, self.composite.mask]
        return tuple(dict.fromkeys(name for name in names if name))

    @property
    def steps_run(self) -> int:
        """The denoising steps that really run: img2img starts part-way, as mflux does (Config.init_time_step)."""
        if self.init_image is None or not self.image_strength:
            return self.steps
        skipped = max(1, int(self.steps * min(max(self.image_strength, 0.0), 1.0)))
        return max(self.steps - skipped, 0)


@dataclass(frozen=True)
class OutputSpec:
    format: ImageFormat = ImageFormat.JPEG
    quality: int = 85


@dataclass(frozen=True)
class Task:
    id: str
    seq: int
    status: TaskStatus
    priority: bool
    params: GenerationParams
    output: OutputSpec
    engine: str
    client: str
    submitted_at: float
    variant: Variant
    started_at: float | None = None
    rendered_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    error: str | None = None
    image_bytes: int | None = None
    fetched_at: float | None = None
    worker: str | None = None  # the worker it runs (or last ran) on
    owner: str = ""  # the name of the API key that queued it ("" without named keys)

    @property
    def occupies_engine(self) -> bool:
        """A running task holds the engine until its pixels exist; encoding them runs beside the next task."""
        return self.status is TaskStatus.RUNNING and self.rendered_at is None

    @property
    def has_image(self) -> bool:
        return self.status is TaskStatus.DONE and self.fetched_at is None
