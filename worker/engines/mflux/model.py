"""One loaded mflux model: runs its own `generate_image` with progress and cancellation through mflux's
callback registry, and gives memory back after every image as mflux's own loop does."""

from __future__ import annotations

import gc
import inspect
import logging
from typing import Any

import numpy as np

from core.models import ModelInfo, Variant
from core.tasks import GenerationParams
from worker.engines.base import Generation, GenerationProgress, LoadedModel, PreviewSource, TaskCancelled
from worker.engines.mflux.family import Family, Member
from worker.engines.mflux.previews import latents_to_preview

log = logging.getLogger(__name__)

PROMPT_CACHE_LIMIT = 8  # mflux caches text embeddings per prompt forever; a server must bound that


class MfluxModel(LoadedModel):
    def __init__(self, model: Any, info: ModelInfo, variant: Variant, family: Family, member: Member) -> None:
        from mflux.utils.exceptions import StopImageGenerationException

        self.model = model
        self.info = info
        self.variant = variant
        self.family = family
        self.member = member
        self._stop_exception = StopImageGenerationException
        self._bridge = ProgressBridge(family, StopImageGenerationException)
        model.callbacks.register(self._bridge)
        self._accepted = set(inspect.signature(model.generate_image).parameters)

    def generate(self, params: GenerationParams, progress: GenerationProgress) -> Generation:
        if progress.cancelled:
            raise TaskCancelled
        kwargs = self.family.arguments(params, self.member)
        unexpected = set(kwargs) - self._accepted
        if unexpected:  # tests/test_mflux_catalog.py keeps this from happening with the mflux we know
            raise TypeError(f"{type(self.model).__name__}.generate_image takes no {', '.join(sorted(unexpected))}")
        cached = self._prompt_cached(params)
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
            _release_memory()
        return Generation(result.image, prompt_cached=cached)

    def close(self) -> None:
        self.model = None

    def _cache(self) -> Any:
        return getattr(self.model, "prompt_cache", None) or getattr(self.model, "_prompt_cache", None)

    def _prompt_cached(self, params: GenerationParams) -> bool | None:
        cache = self._cache()
        if self.family.prompt_cache is None or cache is None:
            return None
        try:
            return self.family.prompt_cache(params) in cache
        except TypeError:  # an unhashable key: cannot tell
            return None

    def _trim_prompt_cache(self) -> None:
        cache = self._cache()
        if hasattr(cache, "__len__") and hasattr(cache, "clear") and len(cache) > PROMPT_CACHE_LIMIT:
            cache.clear()


def _release_memory() -> None:
    """What mflux's own loop does after each image: MLX's buffer cache would otherwise grow across sizes."""
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()


class ProgressBridge:
    """Registered once on `model.callbacks`; forwards mflux's loop events to the current task's progress.

    `CallbackRegistry.register` files an object under each `call_*` method it has, and none is required.
    """

    def __init__(self, family: Family, stop_exception: type[Exception]) -> None:
        import mlx.core as mx  # only ever built in the worker, after mflux imported fine

        self._mx = mx
        self._family = family
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
        if progress is None:  # a generate_image call that did not come through MfluxModel.generate
            return
        # img2img starts part-way through the schedule; count steps from where the loop really starts.
        self._first_step = getattr(config, "init_time_step", 0) or 0
        steps = getattr(config, "num_inference_steps", None) or 1
        progress.loop_started(max(steps - self._first_step, 1))
        self._stop_if_cancelled(progress)  # text encoding may have taken a while

    def call_in_loop(
        self, t: int, seed: int, prompt: str, latents: Any, config: Any, time_steps: Any = None, denoised: Any = None
    ) -> None:
        progress = self._progress
        if progress is None:
            return
        # mflux calls us before its own mx.eval(latents): without this the step's work would be timed
        # as part of the next step. Declaring `denoised` opts in to models that pass their clean-image
        # prediction (Krea 2, Iris, Anima), which previews much better than the noisy latents.
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

    def _preview_source(self, latents: Any, height: int, width: int) -> PreviewSource | None:
        preview = self._family.preview
        if preview.layout == "none":
            return None
        # Copied out of MLX here, on the thread that runs the model (about 1 MB at 1024x1024), so the
        # preview can be rendered later from any thread; bfloat16 has no numpy dtype, hence the cast.
        array = np.asarray(latents.astype(self._mx.float32))

        def render():
            try:
                return latents_to_preview(array, preview, height, width)
            except ValueError:  # a shape this family's layout does not explain (e.g. a padded edit canvas)
                log.debug("no preview for latents of shape %s", array.shape)
                raise

        return render
