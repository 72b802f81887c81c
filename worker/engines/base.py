"""The engine interface: load a model once, then turn `GenerationParams` into pixels, step by step."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

from PIL import Image

from core.engines import EngineConfig, EngineInfo
from core.tasks import GenerationParams

ENGINE_NAMES = ("mflux", "demo")


class TaskCancelled(Exception):
    """Raised out of `Engine.generate` when the task was cancelled between two steps."""


class EngineLoadError(Exception):
    """The engine cannot be loaded; the message says why and how to fix it."""


PreviewSource = Callable[[], Image.Image]


class GenerationProgress(Protocol):
    """How an engine reports its denoising loop and learns that its task was cancelled."""

    def loop_started(self, steps: int) -> None: ...

    def step_done(self, step: int, preview: PreviewSource | None = None) -> None:
        """`step` counts finished steps (1..steps); `preview` renders the current state cheaply on demand."""

    @property
    def cancelled(self) -> bool: ...


class Engine(ABC):
    info: EngineInfo

    @abstractmethod
    def generate(self, params: GenerationParams, progress: GenerationProgress) -> Image.Image:
        """Produce one image; raises `TaskCancelled` if `progress.cancelled` turns true mid-way."""

    def image_metadata(self, params: GenerationParams) -> dict[str, str]:
        """Text stored in the image file next to the pixels (PNG text chunks, EXIF description)."""
        return {
            "Software": f"mflux-server ({self.info.label})",
            "prompt": params.prompt,
            "seed": str(params.seed),
            "steps": str(params.steps),
            "guidance": str(params.guidance),
            "model": self.info.model,
            "engine": self.info.name,
        }


_MODULES = {"mflux": "worker.engines.mflux_engine", "demo": "worker.engines.demo"}


def _module(config: EngineConfig):
    if config.engine not in _MODULES:
        raise EngineLoadError(f"Unknown engine {config.engine!r}; choose one of {', '.join(ENGINE_NAMES)}.")
    return importlib.import_module(_MODULES[config.engine])


def describe_engine(config: EngineConfig) -> EngineInfo:
    """The engine's `EngineInfo`, without importing any model code (safe in the API process)."""
    return _module(config).describe(config)


def load_engine(config: EngineConfig) -> Engine:
    """Load the engine and its model; only ever called inside the worker process."""
    return _module(config).load(config)
