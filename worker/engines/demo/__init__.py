"""The demo engine: a test instrument, not a model. Deterministic procedural pictures (same prompt, seed and size:
same pixels), labelled as demo output in every image, with the timing of a cost profile (costs.py)."""

from __future__ import annotations

import worker.engines.demo.catalog as _catalog
from core.engines import EngineConfig
from core.models import Catalog


def catalog(config: EngineConfig) -> Catalog:
    return _catalog.catalog(config)


def engine(config: EngineConfig):
    from worker.engines.demo.engine import DemoEngine

    return DemoEngine(config)
