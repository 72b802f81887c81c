"""How long the demo engine takes: a cost profile per demo model, so that scheduling and forecasts are exercised
the way real models would exercise them.

Two profiles (`--demo-profile`):
- `formula` follows the forecaster's own cost structure (taskqueue/forecast.py): fixed text encoding, per-step
  cost growing with megapixels and their square, decoding per megapixel, ±3 % noise. Accuracy measured on it
  proves little; it is there because it is predictable.
- `mac` is a foreign profile, written from what real mflux does on a Mac and NOT from the forecaster's formula:
  mflux's prompt cache (a repeated prompt skips text encoding), a slower first image after each load (MLX
  compiles and warms up), thermal drift (the machine slows as it heats over tens of images), a per-step cost that
  follows a power law of the token count, decoding slightly super-linear in pixels, ±6 % noise, and load times of
  seconds. The forecaster has to learn it; the benchmarks and the learning tests run on it.

Durations are seconds at `--demo-speed 1`; the engine divides them by the speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.tasks import GenerationParams
from worker.engines.demo.pictures import digest

PROFILES = ("formula", "mac")


@dataclass(frozen=True)
class DemoCosts:
    """One demo model's costs in the `formula` profile; the `mac` profile scales its own curves by `scale`."""

    text_encode: float = 0.5
    step: float = 0.02
    step_per_mp: float = 1.4
    step_per_mp_sq: float = 0.6
    decode_per_mp: float = 0.7
    load: float = 1.0
    scale: float = 1.0  # relative size of the model: the `mac` profile's costs grow with it

    def nominal_step(self, megapixels: float) -> float:
        return self.step + self.step_per_mp * megapixels + self.step_per_mp_sq * megapixels**2


def jitter(params: GenerationParams, noise: float) -> float:
    """A deterministic factor within ±noise: same task, same time."""
    value = int.from_bytes(digest("time", params.prompt, params.seed, params.width, params.height)[:4], "big")
    return 1.0 + noise * (2.0 * value / 0xFFFFFFFF - 1.0)


class FormulaProfile:
    """The forecaster's own cost structure."""

    NOISE = 0.03

    def __init__(self, costs: DemoCosts) -> None:
        self.costs = costs

    def load_seconds(self) -> float:
        return self.costs.load

    def rated_step_seconds(self) -> float:
        """The one figure a spec sheet would give: a step at one megapixel."""
        return self.costs.nominal_step(1.0)

    def encode_seconds(self, params: GenerationParams, cached: bool) -> float:
        return self.costs.text_encode * jitter(params, self.NOISE)

    def step_seconds(self, params: GenerationParams, first_after_load: bool) -> float:
        return self.costs.nominal_step(params.work_megapixels) * jitter(params, self.NOISE)

    def decode_seconds(self, params: GenerationParams) -> float:
        return self.costs.decode_per_mp * params.megapixels * jitter(params, self.NOISE)

    def image_done(self) -> None:
        """Nothing drifts in the formula profile."""


class MacProfile:
    """Real mflux's habits on Apple Silicon, not the forecaster's formula (see the module docstring)."""

    NOISE = 0.06
    TEXT_ENCODE = 1.1  # seconds, T5/Qwen-class text encoders
    CACHED_ENCODE = 0.04  # a cached prompt still prepares latents
    WARMUP = 1.4  # the first image after a load: steps this much slower
    DRIFT = 0.12  # up to 12 % slower once hot
    DRIFT_IMAGES = 30.0  # images to get about two thirds of the way there

    def __init__(self, costs: DemoCosts) -> None:
        self.costs = costs
        self._images = 0

    def load_seconds(self) -> float:
        return 6.0 * self.costs.scale

    def rated_step_seconds(self) -> float:
        """The one figure a spec sheet would give (a step at 1024×1024), as the catalog gives for real models;
        the rest of this profile (cache, warm-up, drift, power law) is for the forecaster to learn."""
        return self.costs.scale * (0.12 + 1.55)

    def encode_seconds(self, params: GenerationParams, cached: bool) -> float:
        seconds = self.CACHED_ENCODE if cached else self.TEXT_ENCODE
        return seconds * jitter(params, self.NOISE)

    def step_seconds(self, params: GenerationParams, first_after_load: bool) -> float:
        tokens = params.work_megapixels * 1024 * 1024 / 256.0  # an edit attends to its references too
        seconds = self.costs.scale * (0.12 + 1.55 * (tokens / 4096.0) ** 1.32)  # attention: superlinear in tokens
        seconds *= self._drift() * (self.WARMUP if first_after_load else 1.0)
        return seconds * jitter(params, self.NOISE)

    def decode_seconds(self, params: GenerationParams) -> float:
        return (0.08 + 0.55 * params.megapixels**1.15) * self._drift() * jitter(params, self.NOISE)

    def image_done(self) -> None:
        self._images += 1

    def _drift(self) -> float:
        return 1.0 + self.DRIFT * (1.0 - math.exp(-self._images / self.DRIFT_IMAGES))


def profile_for(name: str, costs: DemoCosts) -> FormulaProfile | MacProfile:
    if name == "mac":
        return MacProfile(costs)
    if name == "formula":
        return FormulaProfile(costs)
    raise ValueError(f"unknown demo profile {name!r}; choose one of {', '.join(PROFILES)}")
