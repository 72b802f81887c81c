"""The task: what a client asked for, and where it stands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MEGAPIXEL = 1024 * 1024

# Task ids are 16 lowercase hex digits; anything else is refused before it can reach SQL or a file path.
TASK_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def is_task_id(text: str) -> bool:
    return bool(TASK_ID_PATTERN.fullmatch(text))


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
class GenerationParams:
    """Everything an engine needs to produce one image, sizes already rounded to what the model can do."""

    prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance: float
    negative_prompt: str | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def megapixels(self) -> float:
        return self.pixels / MEGAPIXEL


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
    started_at: float | None = None
    rendered_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    error: str | None = None
    image_bytes: int | None = None
    fetched_at: float | None = None

    @property
    def occupies_engine(self) -> bool:
        """A running task holds the engine until its pixels exist; encoding them runs beside the next task."""
        return self.status is TaskStatus.RUNNING and self.rendered_at is None

    @property
    def has_image(self) -> bool:
        return self.status is TaskStatus.DONE and self.fetched_at is None
