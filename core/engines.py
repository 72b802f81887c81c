"""What an engine is configured with: plain, picklable settings that cross into the worker process."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    engine: str = "mflux"  # "mflux": real models; "demo": procedural test pictures
    model: str | None = None  # the default model, loaded at start (None: the engine's own default)
    quantize: int | None = None  # the default model's quantization
    path: str | None = None  # local weights of the default model, instead of the Hugging Face cache
    lora_paths: tuple[str, ...] = ()  # LoRAs applied to the default model (the operator's own files)
    lora_scales: tuple[float, ...] = ()
    lora_dirs: tuple[str, ...] = ()  # LoRA library: per-request LoRAs are looked up here, by name
    models: tuple[str, ...] = ()  # models offered besides the default (empty: those whose weights are present)
    allow_downloads: bool = False  # may a request for a model without local weights download them?
    max_loaded_models: int = 1  # variants kept loaded at once in the worker
    mlx_cache_limit_bytes: int | None = None  # MLX's buffer cache limit (None: MLX's default)
    demo_speed: float = 1.0  # demo engine: divide its modelled durations by this
    demo_profile: str = "formula"  # demo engine: which cost profile its timing follows (worker/engines/demo/costs.py)
