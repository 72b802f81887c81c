"""The engine's command-line options, shared by the server (its own worker) and mflux-server-worker (a worker on
another machine), so that both are configured alike: what an engine runs is described here once."""

from __future__ import annotations

import argparse
import importlib.util

from core.engines import EngineConfig
from core.models import QUANTIZE_BITS
from worker.engines.base import ENGINE_NAMES
from worker.engines.demo.costs import PROFILES as DEMO_PROFILES

MFLUX_MISSING = """The mflux engine needs the mflux package, which is not installed in this Python environment.
  On a Mac with Apple Silicon:  pip install -e '.[mflux]'   (or: pip install mflux)
  On Linux, for CPU MLX:        python scripts/install_mflux.py
  To try the server without a model, run it with --engine demo (procedural test images)."""


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--engine", choices=ENGINE_NAMES, default="mflux", help="mflux: real models; demo: procedural test images")
    add("--model", "-m", default=None, help="the default model, loaded at start (mflux: schnell; demo: demo)")
    add("--quantize", "-q", type=int, choices=QUANTIZE_BITS, default=None, help="quantize the default model")
    add("--path", default=None, help="local directory with the default model's weights (not the Hugging Face cache)")
    add("--lora-paths", nargs="+", default=[], help="LoRA adapter files to apply to the default model")
    add("--lora-scales", nargs="+", type=float, default=[], help="one scale per LoRA adapter")
    add("--models", default="", help="models clients may ask for, comma separated, or 'all' (default: the default "
        "model and every model whose weights are on this machine)")  # fmt: skip
    add("--allow-downloads", action="store_true", help="let a request for an offered model download its weights")
    add("--lora-dir", action="append", default=[], help="LoRA library for per-request LoRAs (repeatable; "
        "default: $LORA_LIBRARY_PATH)")  # fmt: skip
    add("--max-loaded-models", type=int, default=1, help="model variants kept loaded at once (memory allowing)")
    add("--mlx-cache-limit-gb", type=float, default=None, help="cap MLX's buffer cache, in GB")
    add("--cache_limit", type=int, default=None, help="the same in bytes, as the original server took it")
    add("--demo-speed", type=float, default=1.0, help="demo engine: divide its modelled durations by this")
    add("--demo-profile", choices=DEMO_PROFILES, default="formula", help="demo engine: formula (its forecaster's own "
        "cost structure) or mac (a foreign profile: prompt cache, warm-up, drift)")  # fmt: skip


def engine_config(args: argparse.Namespace) -> EngineConfig:
    cache_limit = args.cache_limit if args.cache_limit else None
    if args.mlx_cache_limit_gb is not None:
        cache_limit = round(args.mlx_cache_limit_gb * 1e9)
    return EngineConfig(
        engine=args.engine, model=args.model, quantize=args.quantize, path=args.path,
        lora_paths=tuple(args.lora_paths), lora_scales=tuple(args.lora_scales), lora_dirs=tuple(args.lora_dir),
        models=tuple(name.strip() for name in args.models.split(",") if name.strip()),
        allow_downloads=args.allow_downloads, max_loaded_models=args.max_loaded_models,
        mlx_cache_limit_bytes=cache_limit, demo_speed=args.demo_speed, demo_profile=args.demo_profile,
    )  # fmt: skip


def engine_missing(config: EngineConfig) -> str | None:
    """What to tell the operator when the engine cannot even be imported here."""
    if config.engine == "mflux" and importlib.util.find_spec("mflux") is None:
        return MFLUX_MISSING
    return None
