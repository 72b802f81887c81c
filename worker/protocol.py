"""Messages between the server and a worker: plain, picklable, frozen dataclasses, handled by type.

Errors cross as data (a kind and a message), never as pickled exceptions.

    server -> worker:  Preload, Submit, Cancel, Shutdown; to a worker on another machine, Announce
    worker -> server:  Ready | EngineFailed, Loading, Loaded | LoadFailed, Started, Rendered, Finished,
                       Failed, Cancelled, Log; from a worker on another machine, WorkerExited, Holding
"""

from __future__ import annotations

from dataclasses import dataclass

from core.models import Variant
from core.tasks import GenerationParams, OutputSpec


@dataclass(frozen=True)
class Preload:
    """Load this variant now, so that the tasks that need it do not wait for it (the default model, /api/load)."""

    variant: Variant


@dataclass(frozen=True)
class Submit:
    task_id: str
    variant: Variant
    params: GenerationParams
    output: OutputSpec
    image_path: str  # where the encoded image must end up (written atomically)
    inputs_dir: str  # where the task's input images are (params name files in it)


@dataclass(frozen=True)
class Cancel:
    """Stop this task at its next step (the local worker gets it through the status table, at once)."""

    task_id: str


@dataclass(frozen=True)
class Shutdown:
    """Finish encoding what is rendered, then exit; a task still on the engine is abandoned."""


@dataclass(frozen=True)
class Ready:
    """The engine works here (mflux imports); models load on demand."""

    engine: str


@dataclass(frozen=True)
class EngineFailed:
    """The engine itself cannot work here; nothing will run until the operator fixes it."""

    message: str


@dataclass(frozen=True)
class Loading:
    variant: str  # Variant.key
    at: float


@dataclass(frozen=True)
class Loaded:
    variant: str
    seconds: float
    evicted: tuple[str, ...] = ()  # variants let go to make room (--max-loaded-models)


@dataclass(frozen=True)
class LoadFailed:
    variant: str
    message: str


@dataclass(frozen=True)
class Started:
    task_id: str
    at: float


@dataclass(frozen=True)
class Rendered:
    """The engine is free again: the pixels exist and are being encoded beside the next task.

    The phases are what the forecaster learns from: before the loop (text encoding, latents), the loop, after it
    (decoding). `first_after_load`: the first image of a freshly loaded variant (it warms up)."""

    task_id: str
    at: float
    engine_seconds: float  # from Started to Rendered
    step_seconds: float | None = None  # mean time of one denoising step; None if the engine reported none
    before_loop_seconds: float | None = None
    loop_seconds: float | None = None
    after_loop_seconds: float | None = None
    steps_run: int = 0
    prompt_cached: bool | None = None
    first_after_load: bool = False


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
    kind: str  # "generation" (the engine raised), "encoding" (the image could not be written), "load", "input"
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


@dataclass(frozen=True)
class Announce:
    """To a worker on another machine: say Ready again, with what you hold (the server has restarted)."""


@dataclass(frozen=True)
class Holding:
    """From a worker on another machine, after an Announce: the task it is rendering."""

    task_id: str


@dataclass(frozen=True)
class WorkerExited:
    """A worker on another machine: its worker process ended (its supervisor starts another, or halts)."""

    exitcode: int | None
    was_ready: bool


ToWorker = Preload | Submit | Cancel | Shutdown | Announce
FromWorker = (
    Ready | EngineFailed | Loading | Loaded | LoadFailed | Started | Rendered | Finished | Failed | Cancelled | Log
)
