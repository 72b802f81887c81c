"""The demo engine: loads demo models (a pause as long as their cost profile says) and renders procedural
pictures, phase by phase, as long as the profile says each phase takes."""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
from PIL import Image

import worker.engines.demo.faults as faults
from core.engines import EngineConfig
from core.models import ModelInfo, ModelKind, Variant
from core.tasks import GenerationParams
from worker.engines.base import Engine, Generation, GenerationProgress, LoadedModel, ModelLoadError, TaskCancelled
from worker.engines.demo.catalog import COSTS, catalog
from worker.engines.demo.costs import profile_for
from worker.engines.demo.pictures import (
    edited,
    from_image,
    label,
    noise_image,
    open_mask,
    open_rgb,
    partial,
    render,
    start_of,
    upscaled,
)

PROMPT_CACHE_SIZE = 8  # as mflux-server bounds mflux's prompt cache


class DemoEngine(Engine):
    name = "demo"

    def __init__(self, config: EngineConfig) -> None:
        faults.crash_if_asked_while_loading_engine()
        self.catalog = catalog(config)
        self._config = config

    def load(self, variant: Variant) -> DemoModel:
        info = self.catalog.get(variant.model)
        if faults.model_load_refused(info.name):
            raise ModelLoadError(f"demo fault injected: the model {info.name!r} refused to load")
        profile = profile_for(self._config.demo_profile, COSTS[info.name])
        _spend(profile.load_seconds(), self._config.demo_speed, since=time.monotonic())
        return DemoModel(info, variant, profile, self._config.demo_speed)


class DemoModel(LoadedModel):
    def __init__(self, info: ModelInfo, variant: Variant, profile, speed: float) -> None:
        self.info = info
        self.variant = variant
        self._profile = profile
        self._speed = speed
        self._prompts: OrderedDict[str, None] = OrderedDict()  # what mflux's prompt cache would hold
        self._first = True

    def generate(self, params: GenerationParams, progress: GenerationProgress) -> Generation:
        started = time.monotonic()
        first, self._first = self._first, False
        cached = params.prompt in self._prompts
        faults.fault_point(params, "before-loop")
        final, start = self._picture(params)  # the real CPU work of the demo; it counts as encoding's time
        self._spend(self._profile.encode_seconds(params, cached), since=started)
        self._remember(params.prompt)
        steps = params.steps_run
        progress.loop_started(steps)
        for step in range(1, steps + 1):
            if progress.cancelled:
                raise TaskCancelled
            self._spend(self._profile.step_seconds(params, first), since=time.monotonic())
            faults.fault_point(params, f"step-{step}")
            progress.step_done(step, lambda s=step: partial(start, final, s / steps))
        if progress.cancelled:
            raise TaskCancelled
        self._spend(self._profile.decode_seconds(params), since=time.monotonic())
        faults.fault_point(params, "after-loop")
        self._profile.image_done()
        return Generation(final, prompt_cached=cached)

    def _picture(self, params: GenerationParams) -> tuple[Image.Image, np.ndarray]:
        """The finished picture, honouring the inputs visibly, and what the first preview starts from."""
        size, noise = (params.width, params.height), noise_image(params)
        target = render(params)
        kind = self.info.kind
        if kind is ModelKind.UPSCALE:
            picture = upscaled(open_rgb(params.init_image), size)
            return label(picture, params, self.variant.key), start_of(noise, picture, 0.9)
        if kind is ModelKind.EDIT:
            references = [open_rgb(path, size) for path in params.references]
            picture = edited(references, target)
            if params.mask is not None:  # this model repaints only what the mask marks, as mflux's do
                picture = Image.composite(picture, references[0], open_mask(params.mask, size))
            return label(picture, params, self.variant.key), start_of(noise, references[0], 0.5)
        if params.init_image is not None:
            kept = params.image_strength or 0.0
            init = open_rgb(params.init_image, size)
            return label(from_image(init, target, kept), params, self.variant.key), start_of(noise, init, kept)
        return label(target, params, self.variant.key), noise

    def image_metadata(self, params: GenerationParams) -> dict[str, str]:
        # Called on the worker's encoder thread just before encoding: the "encoding" fault point lives here,
        # so the production encoder loop knows nothing of faults.
        faults.fault_point(params, "encoding")
        return super().image_metadata(params)

    def _remember(self, prompt: str) -> None:
        self._prompts[prompt] = None
        self._prompts.move_to_end(prompt)
        while len(self._prompts) > PROMPT_CACHE_SIZE:
            self._prompts.popitem(last=False)

    def _spend(self, seconds: float, since: float) -> None:
        _spend(seconds, self._speed, since)


def _spend(seconds: float, speed: float, since: float) -> None:
    """Hold the engine as long as the modelled work takes (the GPU would be busy; here nothing is)."""
    remaining = seconds / speed - (time.monotonic() - since)
    if remaining > 0:
        time.sleep(remaining)
