"""The variants a worker holds loaded: at most `max_loaded`, the least recently used let go first.

Switching is in-process (mflux's documented recipe: drop the model, `gc.collect()`, `mx.clear_cache()`): it keeps
the worker, its imports and MLX's compiled kernels, so a switch costs a load and no process start. If a load ever
takes the process down (the OOM killer), the supervisor's rules for a dead worker apply as to any task.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from core.models import Variant
from worker.engines.base import Engine, LoadedModel, ModelLoadError
from worker.outbox import Outbox
from worker.protocol import Loaded, LoadFailed, Loading

log = logging.getLogger(__name__)


class LoadedModels:
    def __init__(self, engine: Engine, max_loaded: int, outbox: Outbox) -> None:
        self._engine = engine
        self._max_loaded = max(1, max_loaded)
        self._outbox = outbox
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._fresh: set[str] = set()  # loaded, no image made yet: its first one warms it up

    def get(self, variant: Variant) -> LoadedModel | None:
        """The loaded variant, loading it (and letting go of others) if need be; None if it cannot be loaded."""
        key = variant.key
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        evicted = self._make_room()
        began = time.monotonic()
        self._outbox.send(Loading(key, time.time()))
        try:
            model = self._engine.load(variant)
        except ModelLoadError as error:
            self._outbox.send(LoadFailed(key, str(error)))
            return None
        except Exception as error:  # a broken model must reach the user as a message, not a dead worker
            log.exception("loading %s failed", key)
            self._outbox.send(LoadFailed(key, f"Loading {key} failed: {type(error).__name__}: {error}"))
            return None
        self._models[key] = model
        self._fresh.add(key)
        self._outbox.send(Loaded(key, time.monotonic() - began, evicted))
        return model

    def first_image(self, variant: Variant) -> bool:
        """Whether this is the variant's first image since it was loaded (asked once per task)."""
        key = variant.key
        fresh = key in self._fresh
        self._fresh.discard(key)
        return fresh

    def _make_room(self) -> tuple[str, ...]:
        evicted = []
        while len(self._models) >= self._max_loaded:
            key, model = self._models.popitem(last=False)
            model.close()
            self._fresh.discard(key)
            evicted.append(key)
        if evicted:
            self._engine.release()
            log.info("let go of %s to make room", ", ".join(evicted))
        return tuple(evicted)
