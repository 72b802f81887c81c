"""The mflux engine: real text-to-image models on Apple's MLX, run through mflux's own pipelines.

`describe` works without mflux (the API process calls it); mflux and MLX are imported only by `load`, in
the worker process. Progress and cancellation ride on mflux's callback registry: a `ProgressBridge`
registered once on the model reports each denoising step and raises mflux's `StopImageGenerationException`
when the task has been cancelled, which `MfluxEngine.generate` turns into `TaskCancelled`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.engines import EngineConfig, EngineInfo
from core.tasks import GenerationParams
from worker.engines.base import (
    Engine,
    EngineLoadError,
    GenerationProgress,
    PreviewSource,
    TaskCancelled,
)
from worker.engines.mflux_models import ModelSpec, resolve_model

logger = logging.getLogger(__name__)

MFLUX_VERSION = "0.24.0"  # the version scripts/install_mflux.py installs and the tests check against
QUANTIZE_BITS = (3, 4, 5, 6, 8)  # mflux's QUANTIZE_CHOICES
SIZE_STEP = 16  # mflux's Config rounds width and height down to a multiple of 16
PREVIEW_MAX_SIDE = 128  # previews are thumbnails; 1/8 of a 1024 px side
PROMPT_CACHE_LIMIT = 8  # mflux caches text embeddings per prompt forever; a server must bound that
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install_mflux.py"

# Linear latent-to-RGB projections, one row per latent channel, plus a bias; the result is in [-1, 1].
# These are the published fits ComfyUI (comfy/latent_formats.py: Flux, Flux2, Wan21) and InvokeAI use
# for their step previews. They apply to latents in model space (already scaled and shifted, or
# normalised, for the transformer), which is what mflux's loop holds: its VAEs undo that in `decode`.
# Z-Image decodes with the FLUX.1 VAE; Qwen-Image and Krea 2 with the Qwen-Image (Wan 2.1) VAE.
LATENT_RGB_FACTORS: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]] = {
    "flux1": (
        (
            (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
            (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
            (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
            (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
            (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
            (-0.1262, -0.0982, -0.0778),
        ),
        (-0.0329, -0.0718, -0.0851),
    ),
    "flux2": (
        (
            (0.0058, 0.0113, 0.0073), (0.0495, 0.0443, 0.0836), (-0.0099, 0.0096, 0.0644),
            (0.2144, 0.3009, 0.3652), (0.0166, -0.0039, -0.0054), (0.0157, 0.0103, -0.0160),
            (-0.0398, 0.0902, -0.0235), (-0.0052, 0.0095, 0.0109), (-0.3527, -0.2712, -0.1666),
            (-0.0301, -0.0356, -0.0180), (-0.0107, 0.0078, 0.0013), (0.0746, 0.0090, -0.0941),
            (0.0156, 0.0169, 0.0070), (-0.0034, -0.0040, -0.0114), (0.0032, 0.0181, 0.0080),
            (-0.0939, -0.0008, 0.0186), (0.0018, 0.0043, 0.0104), (0.0284, 0.0056, -0.0127),
            (-0.0024, -0.0022, -0.0030), (0.1207, -0.0026, 0.0065), (0.0128, 0.0101, 0.0142),
            (0.0137, -0.0072, -0.0007), (0.0095, 0.0092, -0.0059), (0.0000, -0.0077, -0.0049),
            (-0.0465, -0.0204, -0.0312), (0.0095, 0.0012, -0.0066), (0.0290, -0.0034, 0.0025),
            (0.0220, 0.0169, -0.0048), (-0.0332, -0.0457, -0.0468), (-0.0085, 0.0389, 0.0609),
            (-0.0076, 0.0003, -0.0043), (-0.0111, -0.0460, -0.0614),
        ),
        (-0.0329, -0.0718, -0.0851),
    ),
    "wan21": (
        (
            (-0.1299, -0.1692, 0.2932), (0.0671, 0.0406, 0.0442), (0.3568, 0.2548, 0.1747),
            (0.0372, 0.2344, 0.1420), (0.0313, 0.0189, -0.0328), (0.0296, -0.0956, -0.0665),
            (-0.3477, -0.4059, -0.2925), (0.0166, 0.1902, 0.1975), (-0.0412, 0.0267, -0.1364),
            (-0.1293, 0.0740, 0.1636), (0.0680, 0.3019, 0.1128), (0.0032, 0.0581, 0.0639),
            (-0.1251, 0.0927, 0.1699), (0.0060, -0.0633, 0.0005), (0.3477, 0.2275, 0.2950),
            (0.1984, 0.0913, 0.1861),
        ),
        (-0.1835, -0.0868, -0.3360),
    ),
}  # fmt: skip


def describe(config: EngineConfig) -> EngineInfo:
    """What the API needs to know, from the static model table; imports neither mflux nor MLX."""
    spec = _resolve(config)
    _check_options(config)
    return EngineInfo(
        name="mflux",
        model=spec.name,
        label=_label(spec, config),
        default_steps=spec.default_steps,
        default_guidance=spec.default_guidance,
        guidance_adjustable=spec.guidance_adjustable,
        supports_negative_prompt=spec.supports_negative_prompt,
        size_step=SIZE_STEP,
        # Not scaled by quantization: see the mflux_models docstring for why there is no basis.
        seconds_per_step_at_1mp=spec.seconds_per_step_at_1mp,
        is_demo=False,
    )


def load(config: EngineConfig) -> MfluxEngine:
    """Build the model with its weights; every failure becomes an `EngineLoadError` saying how to fix it."""
    info = describe(config)
    spec = resolve_model(config.model)
    if importlib.util.find_spec("mflux") is None:
        raise EngineLoadError(f"mflux is not installed in this Python environment ({sys.prefix}). {_install_hint()}")
    try:
        from mflux.models.common.config.model_config import ModelConfig
        from mflux.utils.exceptions import StopImageGenerationException

        module_name, class_name = spec.class_path.split(":")
        model_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, OSError) as exc:  # OSError: e.g. MLX's CUDA build without libcuda.so
        raise EngineLoadError(
            f"mflux is installed but cannot be imported ({type(exc).__name__}: {exc}). {_install_hint()}"
        ) from exc

    model_config = ModelConfig.from_name(model_name=spec.name, base_model=None)
    try:
        model = model_class(
            quantize=config.quantize,
            model_path=config.path,
            lora_paths=list(config.lora_paths) or None,
            lora_scales=list(config.lora_scales) or None,
            model_config=model_config,
        )
    except Exception as exc:  # any failure here means no usable model; say which weights and why
        raise EngineLoadError(_weights_error(spec, config, model_config.model_name, exc)) from exc
    return MfluxEngine(model, spec, info, StopImageGenerationException)


class MfluxEngine(Engine):
    """One loaded mflux model; `generate` runs its own `generate_image` with progress and cancellation."""

    def __init__(self, model: Any, spec: ModelSpec, info: EngineInfo, stop_exception: type[Exception]) -> None:
        self.model = model
        self.spec = spec
        self.info = info
        self._stop_exception = stop_exception
        self._bridge = ProgressBridge(spec, stop_exception)
        model.callbacks.register(self._bridge)
        # Passed only where the signature has it: Flux2Klein.generate_image has no such parameter.
        self._takes_negative_prompt = "negative_prompt" in inspect.signature(model.generate_image).parameters

    def generate(self, params: GenerationParams, progress: GenerationProgress) -> Image.Image:
        if progress.cancelled:
            raise TaskCancelled
        kwargs: dict[str, Any] = {
            "seed": int(params.seed),
            "prompt": params.prompt,
            "num_inference_steps": params.steps,
            "height": params.height,
            "width": params.width,
            # Distilled models misbehave at other values (klein runs CFG against a blank prompt above 1.0).
            "guidance": params.guidance if self.spec.guidance_adjustable else self.spec.default_guidance,
        }
        if self.spec.supports_negative_prompt and self._takes_negative_prompt and params.negative_prompt:
            kwargs["negative_prompt"] = params.negative_prompt
        self._bridge.start(progress)
        try:
            result = self.model.generate_image(**kwargs)
        except self._stop_exception as exc:
            # mflux also raises it for a KeyboardInterrupt; only our own stop is a cancellation.
            if self._bridge.stopped or progress.cancelled:
                raise TaskCancelled from exc
            raise
        finally:
            self._bridge.finish()
            self._trim_prompt_cache()
        return result.image

    def _trim_prompt_cache(self) -> None:
        cache = getattr(self.model, "prompt_cache", None)
        if isinstance(cache, dict) and len(cache) > PROMPT_CACHE_LIMIT:
            cache.clear()


class ProgressBridge:
    """Registered once on `model.callbacks`; forwards mflux's loop events to the current task's progress.

    `CallbackRegistry.register` files an object under each `call_*` method it has, and none is required.
    """

    def __init__(self, spec: ModelSpec, stop_exception: type[Exception]) -> None:
        import mlx.core as mx  # only ever built in the worker, after mflux imported fine

        self._mx = mx
        self._spec = spec
        self._stop_exception = stop_exception
        self._progress: GenerationProgress | None = None
        self._first_step = 0
        self.stopped = False

    def start(self, progress: GenerationProgress) -> None:
        self._progress = progress
        self.stopped = False

    def finish(self) -> None:
        self._progress = None

    def call_before_loop(self, seed: int, prompt: str, latents: Any, config: Any, **_: Any) -> None:
        progress = self._progress
        if progress is None:  # a generate_image call that did not come through MfluxEngine.generate
            return
        # img2img starts part-way through the schedule; count steps from where the loop really starts.
        self._first_step = config.init_time_step
        progress.loop_started(config.num_inference_steps - self._first_step)
        self._stop_if_cancelled(progress)  # text encoding may have taken a while

    def call_in_loop(
        self, t: int, seed: int, prompt: str, latents: Any, config: Any, time_steps: Any, denoised: Any = None
    ) -> None:
        progress = self._progress
        if progress is None:
            return
        # mflux calls us before its own mx.eval(latents): without this the step's work would be timed
        # as part of the next step. Declaring `denoised` opts in to models that pass their clean-image
        # prediction (Krea 2), which previews much better than the noisy latents.
        shown = latents if denoised is None else denoised
        self._mx.eval(latents, shown)
        progress.step_done(t - self._first_step + 1, self._preview_source(shown, config.height, config.width))
        self._stop_if_cancelled(progress)

    def call_after_loop(self, seed: int, prompt: str, latents: Any, config: Any) -> None:
        progress = self._progress
        if progress is not None:
            self._stop_if_cancelled(progress)  # spare the VAE decode of a cancelled task

    def _stop_if_cancelled(self, progress: GenerationProgress) -> None:
        if progress.cancelled:
            self.stopped = True
            raise self._stop_exception("Task cancelled")

    def _preview_source(self, latents: Any, height: int, width: int) -> PreviewSource:
        # Copied out of MLX here, on the thread that runs the model (about 1 MB at 1024x1024), so the
        # preview can be rendered later from any thread; bfloat16 has no numpy dtype, hence the cast.
        array = np.asarray(latents.astype(self._mx.float32))
        layout, rgb = self._spec.latent_layout, self._spec.latent_rgb
        return lambda: latents_to_preview(array, layout, rgb, height, width)


def latents_to_preview(latents: np.ndarray, layout: str, rgb: str | None, height: int, width: int) -> Image.Image:
    """A small RGB picture of in-loop latents: one pixel per 8x8 image pixels, at most PREVIEW_MAX_SIDE."""
    grid = _latent_grid(latents, layout, height, width)
    step = max(1, -(-max(grid.shape[:2]) // PREVIEW_MAX_SIDE))
    grid = grid[::step, ::step]
    factors = LATENT_RGB_FACTORS.get(rgb) if rgb else None
    if factors is not None and len(factors[0]) == grid.shape[-1]:
        matrix, bias = factors
        rgb_values = (grid @ np.asarray(matrix, dtype=np.float32) + np.asarray(bias, dtype=np.float32) + 1) / 2
    else:  # no published projection for this latent space: show its first three channels, stretched
        first = grid[..., :3]
        low, high = first.min(axis=(0, 1)), first.max(axis=(0, 1))
        rgb_values = (first - low) / np.maximum(high - low, 1e-6)
    pixels = (np.clip(rgb_values, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def _latent_grid(latents: np.ndarray, layout: str, height: int, width: int) -> np.ndarray:
    """(rows, cols, channels) at 1/8 of the image size, from either of mflux's latent layouts."""
    if layout == "packed":
        # (1, rows/2 * cols/2, channels * 4): each token is a 2x2 patch, flattened channel-major.
        rows, cols = height // 16, width // 16
        patches = latents.reshape(rows, cols, -1, 2, 2)
        return patches.transpose(0, 3, 1, 4, 2).reshape(rows * 2, cols * 2, patches.shape[2])
    if layout == "spatial":
        # channels by (rows, cols) with size-1 batch/frame axes around them: (16, 1, r, c) or (1, 16, r, c).
        rows, cols = height // 8, width // 8
        return latents.reshape(-1, rows, cols).transpose(1, 2, 0)
    raise ValueError(f"unknown latent layout {layout!r}")


def _resolve(config: EngineConfig) -> ModelSpec:
    try:
        return resolve_model(config.model)
    except ValueError as exc:
        raise EngineLoadError(str(exc)) from exc


def _check_options(config: EngineConfig) -> None:
    if config.quantize is not None and config.quantize not in QUANTIZE_BITS:
        raise EngineLoadError(
            f"--quantize {config.quantize} is not supported by mflux; use one of "
            f"{', '.join(map(str, QUANTIZE_BITS))} bits, or leave it out for full precision."
        )
    _check_loras(config.lora_paths, config.lora_scales)


def _check_loras(paths: Sequence[str], scales: Sequence[float]) -> None:
    if scales and not paths:
        raise EngineLoadError("LoRA scales were given without any LoRA paths.")
    # mflux would pad or truncate a mismatched list with only a printed warning.
    if scales and len(scales) != len(paths):
        raise EngineLoadError(
            f"{len(paths)} LoRA path(s) but {len(scales)} LoRA scale(s): give one scale per path, or none for 1.0 each."
        )


def _label(spec: ModelSpec, config: EngineConfig) -> str:
    details = []
    if config.quantize:
        details.append(f"{config.quantize}-bit")
    elif not config.path:  # a saved model at --path may be pre-quantized: say nothing we do not know
        details.append("bf16")
    if config.path:
        details.append(f"weights from {config.path}")
    if config.lora_paths:
        details.append(f"{len(config.lora_paths)} LoRA")
    return f"mflux {spec.name} ({', '.join(details)})"


def _install_hint() -> str:
    script = f"{sys.executable} {INSTALL_SCRIPT}"
    if sys.platform == "darwin":
        return f"Install it with `{sys.executable} -m pip install mflux=={MFLUX_VERSION}` or `{script}`."
    return (
        "On Linux mflux needs MLX's CPU build: a plain `pip install mflux` pulls the CUDA build, which fails "
        f"without an NVIDIA driver. Install it with `{script}`."
    )


def _weights_error(spec: ModelSpec, config: EngineConfig, repo: str, exc: Exception) -> str:
    problem = f"{type(exc).__name__}: {str(exc).strip().rstrip('.')}"
    if config.path:
        return (
            f"Could not load the mflux model {spec.name!r} from --path {config.path}: {problem}. "
            f"Point --path at a directory with the model's weights (a download of the Hugging Face repo "
            f"{repo}, or a model saved with mflux-save), or leave --path out to use the Hugging Face cache."
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return (
        f"Could not load the mflux model {spec.name!r} from the Hugging Face repo {repo}: {problem}. "
        "mflux downloads the weights on first use (tens of GB; gated repos need `hf auth login` and "
        "accepted terms), so run once with network access to fill the cache, or pass --path to local "
        "weights. "
        + (
            "HF_HUB_OFFLINE is set, so only the local cache was tried."
            if offline
            else "Once the weights are cached, HF_HUB_OFFLINE=1 keeps later starts off the network."
        )
    )
