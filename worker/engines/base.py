"""The engine interface. An `Engine` belongs to one worker process and loads `Variant`s of the models in its
catalog; a `LoadedModel` turns `GenerationParams` into pixels, step by step, reporting through
`GenerationProgress` and stopping when the task is cancelled."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from core.engines import EngineConfig
from core.models import Catalog, ModelInfo, Variant
from core.tasks import GenerationParams

ENGINE_NAMES = ("mflux", "demo")


class TaskCancelled(Exception):
    """Raised out of `LoadedModel.generate` when the task was cancelled between two steps."""


class EngineLoadError(Exception):
    """The engine itself cannot work here (mflux missing or broken); the message says why and how to fix it."""


class ModelLoadError(Exception):
    """One model cannot be loaded (weights missing, wrong path, incompatible mflux); others may still load."""


PreviewSource = Callable[[], Image.Image]


class GenerationProgress(Protocol):
    """How a model reports its denoising loop and learns that its task was cancelled."""

    def loop_started(self, steps: int) -> None:
        """The denoising loop begins; `steps` is how many steps will really run."""

    def step_done(self, step: int, preview: PreviewSource | None = None) -> None:
        """`step` counts finished steps (1..steps); `preview` renders the current state cheaply on demand."""

    @property
    def cancelled(self) -> bool: ...


@dataclass(frozen=True)
class Generation:
    """What a model made, with what the forecaster learns from beyond the timings the worker takes itself."""

    image: Image.Image
    prompt_cached: bool | None = None  # the prompt's text encoding came from the model's cache (None: unknown)


class LoadedModel(ABC):
    info: ModelInfo
    variant: Variant

    @abstractmethod
    def generate(self, params: GenerationParams, progress: GenerationProgress) -> Generation:
        """Produce one image; raises `TaskCancelled` if `progress.cancelled` turns true mid-way."""

    def image_metadata(self, params: GenerationParams) -> dict[str, str]:
        """Text stored in the image file next to the pixels (PNG text chunks, EXIF description)."""
        return {
            "Software": f"mflux-server ({self.info.label})",
            "prompt": params.prompt,
            "seed": str(params.seed),
            "steps": str(params.steps),
            "guidance": str(params.guidance),
            "model": self.variant.key,
            "engine": self.info.engine,
        }

    def close(self) -> None:  # noqa: B027 (most models hold nothing to let go of)
        """Let go of the weights (the engine's `release` then returns the memory)."""


class Engine(ABC):
    name: str
    catalog: Catalog

    @abstractmethod
    def load(self, variant: Variant) -> LoadedModel:
        """Load a variant of one of the catalog's models; raises `ModelLoadError` saying why it cannot."""

    def release(self) -> None:  # noqa: B027 (the demo engine holds no memory worth returning)
        """After models were closed: give their memory back (mflux: gc and MLX's cache)."""


_MODULES = {"mflux": "worker.engines.mflux", "demo": "worker.engines.demo"}


def _module(config: EngineConfig):
    if config.engine not in _MODULES:
        raise EngineLoadError(f"Unknown engine {config.engine!r}; choose one of {', '.join(ENGINE_NAMES)}.")
    return importlib.import_module(_MODULES[config.engine])


def engine_catalog(config: EngineConfig) -> Catalog:
    """The engine's models and which are offered, without loading any model code (safe in the API process).

    Raises `EngineLoadError` when the configuration cannot work (unknown default model, bad options)."""
    return _module(config).catalog(config)


def load_engine(config: EngineConfig) -> Engine:
    """Make the engine ready to load models; only ever called inside the worker process."""
    return _module(config).engine(config)
