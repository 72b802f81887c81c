"""Models: what each one is (`ModelInfo`, a catalog entry) and what a task runs (`Variant`: a model with its
quantization and LoRAs, which costs a load to switch to)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class ModelKind(StrEnum):
    TEXT_TO_IMAGE = "text-to-image"
    EDIT = "edit"  # changes reference images as the prompt says (Kontext, FLUX.2/3 edit, Qwen-Image-Edit, FIBO edit)
    INPAINT = "inpaint"  # repaints the masked area of an image (FLUX.1 Fill)
    UPSCALE = "upscale"  # makes an image larger (SeedVR2)


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the catalog: everything the queue needs to know about a model without loading it."""

    name: str  # canonical name, as mflux's ModelConfig registry has it (or a demo model's)
    engine: str  # "mflux" or "demo"
    family: str  # e.g. "flux1", "flux2-klein", "z-image": what builds it (the original's /api/ls "loader")
    kind: ModelKind
    label: str  # shown to users
    default_steps: int
    default_guidance: float
    guidance_adjustable: bool  # False: the engine always runs `default_guidance`
    negative_prompt: str  # when a negative prompt is really encoded: "never", "with-cfg" (guidance above 1), "always"
    seconds_per_step_at_1mp: float  # the forecaster's prior for one denoising step at 1024×1024
    load_seconds: float  # the forecaster's prior for loading it
    aliases: tuple[str, ...] = ()
    size_step: int = 16  # widths and heights are rounded down to a multiple of this
    min_side: int = 64
    max_side: int | None = None  # a model's own limit, within the server's
    steps_fixed: bool = False  # it always runs its own schedule, whatever `steps` says
    img2img: bool = False  # takes an init image and a strength (starts part-way through the schedule)
    max_references: int = 0  # reference images an edit model takes
    needs_image: bool = False  # refuses to run without an input image
    takes_mask: bool = False  # repaints only the masked area
    memory_gb: float | None = None  # what it needs loaded in server mode (text encoders stay loaded), bf16
    repo: str | None = None  # Hugging Face repo of its weights
    revision: str | None = None  # the revision mflux pins
    is_demo: bool = False

    @property
    def supports_negative_prompt(self) -> bool:
        """A negative prompt takes effect at the model's default guidance."""
        return self.negative_prompt == "always" or (self.negative_prompt == "with-cfg" and self.default_guidance > 1)

    def uses_negative_prompt(self, guidance: float) -> bool:
        return self.negative_prompt == "always" or (self.negative_prompt == "with-cfg" and guidance > 1)

    @property
    def accepts_mask(self) -> bool:
        """A mask is honoured: read by the model itself (`takes_mask`), or by the worker's composite for any model
        that starts from a picture (img2img, edit). Upscalers and models of text alone take none."""
        return self.takes_mask or self.img2img or self.kind is ModelKind.EDIT

    def round_size(self, pixels: int) -> int:
        """Round a side length down to what the model can do, the way mflux does."""
        return max(self.size_step, pixels // self.size_step * self.size_step)

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Lora:
    """A LoRA adapter from the operator's LoRA library (never a client's path): its name and where it is."""

    name: str
    path: str
    scale: float = 1.0


QUANTIZE_BITS = (3, 4, 5, 6, 8)  # mflux's QUANTIZE_CHOICES


def model_of(variant_key: str) -> str:
    """The model of a variant key ("dev@q8+ghibli:0.8" → "dev")."""
    return variant_key.split("@", 1)[0].split("+", 1)[0]


@dataclass(frozen=True)
class Variant:
    """A model as one load of it: quantization and LoRAs are applied when the weights are loaded."""

    model: str  # canonical model name
    quantize: int | None = None
    loras: tuple[Lora, ...] = ()
    path: str | None = None  # local weights the operator pointed at (--path), instead of the Hugging Face cache

    @property
    def key(self) -> str:
        """A short stable name: "schnell", "dev@q8", "dev@q4+ghibli:0.8"."""
        text = self.model if self.quantize is None else f"{self.model}@q{self.quantize}"
        for lora in self.loras:
            text += f"+{lora.name}:{lora.scale:g}"
        return text

    @property
    def cost_key(self) -> str:
        """What its speed is learned under: the model and its quantization (LoRAs barely change it)."""
        return self.model if self.quantize is None else f"{self.model}@q{self.quantize}"

    def label(self) -> str:
        details = [f"{self.quantize}-bit" if self.quantize else ("weights from --path" if self.path else "bf16")]
        details += [f"LoRA {lora.name} ×{lora.scale:g}" for lora in self.loras]
        return f"{self.model} ({', '.join(details)})"


@dataclass(frozen=True)
class Catalog:
    """The models an engine can run, and which of them this server offers."""

    engine: str
    models: tuple[ModelInfo, ...]
    default: str  # canonical name of the server's default model
    offered: frozenset[str] = frozenset()  # canonical names clients may ask for
    present: frozenset[str] = frozenset()  # canonical names whose weights are on this machine
    _by_spelling: dict[str, ModelInfo] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for model in self.models:
            for spelling in model.spellings:
                self._by_spelling.setdefault(_folded(spelling), model)

    def find(self, name: str) -> ModelInfo | None:
        """The model a name or alias means (any case), or None."""
        return self._by_spelling.get(_folded(name))

    def get(self, name: str) -> ModelInfo:
        model = self.find(name)
        if model is None:
            raise KeyError(name)
        return model

    @property
    def default_model(self) -> ModelInfo:
        return self.get(self.default)

    def offered_models(self) -> list[ModelInfo]:
        return [model for model in self.models if model.name in self.offered]


def _folded(name: str) -> str:
    return re.sub(r"\s+", "", name).lower()
