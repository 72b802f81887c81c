"""The mflux engine: real text-to-image (and editing, inpainting, upscaling) models on Apple's MLX, run through
mflux's own pipelines. `catalog` works in the server process (it reads mflux's registry, no model code); models
are built only in the worker process (`engine`)."""

from __future__ import annotations

from core.engines import EngineConfig
from core.models import Catalog


def catalog(config: EngineConfig) -> Catalog:
    from worker.engines.base import EngineLoadError

    try:
        from worker.engines.mflux.catalog import catalog as build
    except ImportError as error:
        raise EngineLoadError(f"mflux cannot be imported here ({error}).") from error
    return build(config)


def engine(config: EngineConfig):
    from worker.engines.mflux.engine import MfluxEngine

    return MfluxEngine(config)
