"""The mflux engine: builds mflux models with their weights (in the worker process only), one `Variant` at a time,
and gives their memory back when they are let go."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from typing import Any

import worker.engines.mflux.hints as hints
from core.engines import EngineConfig
from core.models import Variant
from worker.engines.base import Engine, EngineLoadError, ModelLoadError
from worker.engines.mflux.catalog import catalog, resolve
from worker.engines.mflux.model import MfluxModel
from worker.engines.mflux.registry import mflux_version

log = logging.getLogger(__name__)


class MfluxEngine(Engine):
    name = "mflux"

    def __init__(self, config: EngineConfig) -> None:
        # mflux's loops draw a tqdm bar per step on stderr; in a server that is noise in its log.
        os.environ.setdefault("TQDM_DISABLE", "1")
        if importlib.util.find_spec("mflux") is None:
            raise EngineLoadError(
                f"mflux is not installed in this Python environment ({sys.prefix}). {hints.install_hint()}"
            )
        try:
            import mlx.core as mx
            from mflux.models.common.config.model_config import ModelConfig
        except (ImportError, OSError) as exc:  # OSError: e.g. MLX's CUDA build without libcuda.so
            raise EngineLoadError(
                f"mflux is installed but cannot be imported ({type(exc).__name__}: {exc}). {hints.install_hint()}"
            ) from exc
        self._mx = mx
        self._model_config = ModelConfig
        if config.mlx_cache_limit_bytes is not None:
            mx.set_cache_limit(config.mlx_cache_limit_bytes)
        self.catalog = catalog(config)

    def load(self, variant: Variant) -> MfluxModel:
        info = self.catalog.get(variant.model)
        family, member, _ = resolve(info.name)
        try:
            module_name, class_name = family.class_path.split(":")
            model_class = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(hints.incompatible_mflux(info, exc, mflux_version())) from exc
        kwargs = self._constructor_arguments(model_class, variant, member.key)
        try:
            model = model_class(**kwargs)
        except (TypeError, AttributeError) as exc:  # a signature we do not know: not a weights problem
            raise ModelLoadError(hints.incompatible_mflux(info, exc, mflux_version())) from exc
        except Exception as exc:  # any other failure means no usable model; say which weights and why
            raise ModelLoadError(hints.weights_error(info, variant, exc)) from exc
        return MfluxModel(model, info, variant, family, member)

    def _constructor_arguments(self, model_class: type, variant: Variant, key: str) -> dict[str, Any]:
        wanted: dict[str, Any] = {
            "quantize": variant.quantize,
            "model_path": variant.path,
            "model_config": self._model_config.from_name(model_name=key, base_model=None),
        }
        if variant.loras:
            wanted["lora_paths"] = [lora.path for lora in variant.loras]
            wanted["lora_scales"] = [lora.scale for lora in variant.loras]
        accepted = inspect.signature(model_class.__init__).parameters
        missing = [name for name in ("lora_paths",) if name in wanted and name not in accepted]
        if missing:
            raise ModelLoadError(f"The mflux model {key!r} takes no LoRAs ({model_class.__name__} has no lora_paths).")
        return {name: value for name, value in wanted.items() if name in accepted}

    def release(self) -> None:
        gc.collect()
        self._mx.clear_cache()
