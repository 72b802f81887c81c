"""Messages between the server and its worker process: plain, picklable, frozen dataclasses.

Errors cross as data (a kind and a message), never as pickled exceptions.

    server -> worker:  Submit, Shutdown
    worker -> server:  Ready | LoadFailed, Started, Rendered, Finished, Failed, Cancelled, Log
"""

from __future__ import annotations

from dataclasses import dataclass

from core.engines import EngineInfo
from core.tasks import GenerationParams, OutputSpec


@dataclass(frozen=True)
class Submit:
    task_id: str
    params: GenerationParams
    output: OutputSpec
    image_path: str  # where the encoded image must end up (written atomically)


@dataclass(frozen=True)
class Shutdown:
    """Finish encoding what is rendered, then exit; a task still on the engine is abandoned."""


@dataclass(frozen=True)
class Ready:
    info: EngineInfo
    load_seconds: float


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class Started:
    task_id: str
    at: float


@dataclass(frozen=True)
class Rendered:
    """The engine is free again: the pixels exist and are being encoded beside the next task."""

    task_id: str
    at: float
    engine_seconds: float  # from Started to Rendered: what the forecaster learns from
    step_seconds: float | None = None  # mean time of one denoising step; None if the engine reported none


@dataclass(frozen=True)
class Finished:
    task_id: str
    at: float
    image_bytes: int
    encode_seconds: float


@dataclass(frozen=True)
class Failed:
    task_id: str
    at: float
    kind: str  # "generation" (the engine raised) or "encoding" (the image could not be written)
    message: str


@dataclass(frozen=True)
class Cancelled:
    task_id: str
    at: float


@dataclass(frozen=True)
class Log:
    level: int
    message: str
    task_id: str | None = None


ToWorker = Submit | Shutdown
FromWorker = Ready | LoadFailed | Started | Rendered | Finished | Failed | Cancelled | Log
