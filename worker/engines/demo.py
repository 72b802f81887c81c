"""The demo engine: deterministic procedural pictures with the cost structure of a diffusion transformer.

It is a test instrument, not a model. Every image says so in its pixels and metadata. Its time per image
follows the shape real FLUX-class models have (see `taskqueue.forecast`): a fixed text-encoding cost, per-step
cost growing with pixels and, as attention does, with their square, a decoding cost per pixel, and a few
percent of noise, so the server's scheduling and forecasting are exercised the way a real model would.
`speed` divides every duration, so tests can run a "1024² × 4 steps" task in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time

import numpy as np
from PIL import Image, ImageDraw

from core.engines import EngineConfig, EngineInfo
from core.tasks import GenerationParams
from worker.engines.base import Engine, GenerationProgress, TaskCancelled

LABEL = "demo engine: procedural test pattern, not an image model"

# Seconds at speed 1.0, roughly an M-series GPU running FLUX.1-schnell at 8 bits.
TEXT_ENCODE_SECONDS = 0.5
STEP_SECONDS = 0.02
STEP_SECONDS_PER_MP = 1.4
STEP_SECONDS_PER_MP_SQ = 0.6
DECODE_SECONDS_PER_MP = 0.7
NOISE = 0.03

# Fault injection for the test suite: a prompt containing "[demo-fault:<point>]" makes the demo engine kill
# its own worker process (SIGKILL, like the OOM killer) at that point, or raise at "raise".
# Points: before-loop, step-<n>, after-loop, encoding, raise.
FAULT_MARKER = re.compile(r"\[demo-fault:([a-z0-9-]+)\]")
# Loading has no prompt: MFLUX_DEMO_FAULT=load-crash in the server's environment makes every worker SIGKILL
# itself while loading (the supervisor must halt rather than respawn forever: tests/test_faults.py).
FAULT_ENV = "MFLUX_DEMO_FAULT"


def nominal_step_seconds(megapixels: float) -> float:
    return STEP_SECONDS + STEP_SECONDS_PER_MP * megapixels + STEP_SECONDS_PER_MP_SQ * megapixels**2


def describe(config: EngineConfig) -> EngineInfo:
    return EngineInfo(
        name="demo",
        model="demo",
        label=LABEL,
        default_steps=4,
        default_guidance=3.5,
        guidance_adjustable=True,
        supports_negative_prompt=True,
        size_step=16,
        seconds_per_step_at_1mp=nominal_step_seconds(1.0) / config.demo_speed,
        is_demo=True,
    )


def load(config: EngineConfig) -> DemoEngine:
    if os.environ.get(FAULT_ENV) == "load-crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if config.demo_speed <= 0:
        raise ValueError("demo speed must be positive")
    return DemoEngine(config.demo_speed)


class DemoEngine(Engine):
    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.info = describe(EngineConfig(engine="demo", demo_speed=speed))

    def generate(self, params: GenerationParams, progress: GenerationProgress) -> Image.Image:
        mp = params.megapixels
        jitter = _jitter(params)
        started = time.monotonic()

        self.fault_point(params, "before-loop")
        final = render(params)  # the real CPU work of the demo; it counts as part of text encoding's time
        self._spend(TEXT_ENCODE_SECONDS * jitter, since=started)
        progress.loop_started(params.steps)
        noise = _noise_image(params)
        for step in range(1, params.steps + 1):
            if progress.cancelled:
                raise TaskCancelled
            step_started = time.monotonic()
            self._spend(nominal_step_seconds(mp) * jitter, since=step_started)
            self.fault_point(params, f"step-{step}")
            progress.step_done(step, lambda s=step: _partial(noise, final, s / params.steps))
        if progress.cancelled:
            raise TaskCancelled
        self._spend(DECODE_SECONDS_PER_MP * mp * jitter, since=time.monotonic())
        self.fault_point(params, "after-loop")
        return final

    def image_metadata(self, params: GenerationParams) -> dict[str, str]:
        # Called on the worker's encoder thread just before encoding: the "encoding" fault point lives here,
        # so the production encoder loop knows nothing of faults.
        self.fault_point(params, "encoding")
        return super().image_metadata(params)

    def fault_point(self, params: GenerationParams, point: str) -> None:
        """Crash here if the prompt asks for it (see FAULT_MARKER)."""
        wanted = FAULT_MARKER.findall(params.prompt)
        if point in wanted:
            os.kill(os.getpid(), signal.SIGKILL)
        if point == "before-loop" and "raise" in wanted:
            raise RuntimeError("demo fault injected: the engine raised")

    def _spend(self, seconds: float, since: float) -> None:
        """Hold the engine as long as the modelled work takes (the GPU would be busy; here nothing is)."""
        remaining = seconds / self.speed - (time.monotonic() - since)
        if remaining > 0:
            time.sleep(remaining)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


def _jitter(params: GenerationParams) -> float:
    """A deterministic factor within ±NOISE: same task, same time."""
    value = int.from_bytes(_digest("time", params.prompt, params.seed, params.width, params.height)[:4], "big")
    return 1.0 + NOISE * (2.0 * value / 0xFFFFFFFF - 1.0)


def render(params: GenerationParams) -> Image.Image:
    """The finished picture: colours and shapes from the prompt, their arrangement from the seed."""
    width, height = params.width, params.height
    palette = np.frombuffer(_digest("palette", params.prompt)[:12], dtype=np.uint8).reshape(4, 3).astype(np.float32)
    shape = np.frombuffer(_digest("shape", params.prompt, params.seed), dtype=np.uint8).astype(np.float32) / 255.0

    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    field = np.zeros((height, width), dtype=np.float32)
    for i in range(4):
        fx, fy, phase, weight = (
            2 + 9 * shape[4 * i],
            2 + 9 * shape[4 * i + 1],
            6.3 * shape[4 * i + 2],
            shape[4 * i + 3],
        )
        field += (0.3 + weight) * np.sin(fx * x * np.pi + phase) * np.cos(fy * y * np.pi + phase * 0.7)
    cx, cy = shape[16], shape[17]
    field += 1.5 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.02 + 0.1 * shape[18]))
    t = (field - field.min()) / max(float(np.ptp(field)), 1e-6) * 3.0
    low = np.clip(np.floor(t).astype(np.int32), 0, 2)
    frac = (t - low)[..., None]
    pixels = palette[low] * (1.0 - frac) + palette[low + 1] * frac

    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    _caption(image, params)
    return image


def _caption(image: Image.Image, params: GenerationParams) -> None:
    draw = ImageDraw.Draw(image)
    lines = ["DEMO ENGINE - not an image model", f"seed {params.seed}", params.prompt[:60]]
    draw.rectangle((0, 0, image.width, 12 * len(lines) + 6), fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 3 + 12 * i), line, fill=(255, 255, 255))


def _noise_image(params: GenerationParams) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(_digest("noise", params.seed)[:8], "big"))
    small = rng.integers(0, 256, size=(max(params.height // 16, 1), max(params.width // 16, 1), 3), dtype=np.uint8)
    return small


def _partial(noise: np.ndarray, final: Image.Image, fraction: float) -> Image.Image:
    """What the image looks like `fraction` of the way through denoising (a small preview)."""
    small = final.resize((noise.shape[1], noise.shape[0]), Image.Resampling.BILINEAR)
    mixed = np.asarray(small, dtype=np.float32) * fraction + noise.astype(np.float32) * (1.0 - fraction)
    return Image.fromarray(mixed.astype(np.uint8), "RGB")
