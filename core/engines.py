"""What an engine is configured with, and what it tells the rest of the server about itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    """Plain, picklable settings that cross into the worker process."""

    engine: str = "mflux"
    model: str = "schnell"
    quantize: int | None = None
    path: str | None = None
    lora_paths: tuple[str, ...] = ()
    lora_scales: tuple[float, ...] = ()
    demo_speed: float = 1.0


@dataclass(frozen=True)
class EngineInfo:
    """What the API needs to know about an engine without loading it."""

    name: str  # "mflux" or "demo"
    model: str  # canonical model name
    label: str  # shown to users: what produces the images
    default_steps: int
    default_guidance: float
    guidance_adjustable: bool
    supports_negative_prompt: bool
    size_step: int  # widths and heights are rounded down to a multiple of this
    seconds_per_step_at_1mp: float  # the forecaster's prior, before it has measured anything
    is_demo: bool = False

    def round_size(self, pixels: int) -> int:
        """Round a side length down to what the model can do, the way mflux does."""
        return max(self.size_step, pixels // self.size_step * self.size_step)
