"""What a model family is, in the facts mflux does not publish as data: which class builds it, how its
`generate_image` wants to be called, what its latents look like, what it really does with guidance and negative
prompts, and rough costs. mflux's registry supplies names, aliases, repos, revisions and default steps
(registry.py); `tests/test_mflux_catalog.py` checks every fact here against the installed mflux.

A family is one folder's worth of mflux (`mflux/models/<family>/`): one class (or one per variant kind) serving
several registry keys (`Member`s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.models import ModelKind
from core.tasks import GenerationParams


@dataclass(frozen=True)
class Member:
    """One registry key a family serves, with what differs between its keys."""

    key: str
    default_guidance: float  # the guidance mflux's CLI runs it at (the class default where the CLI has none)
    seconds_per_step: float  # prior: one step at 1024×1024, bf16, on an M3/M4 Max class GPU, CFG passes included
    memory_gb: float  # loaded in server mode, bf16: transformer + text encoders (which stay loaded) + VAE
    guidance_adjustable: bool = True  # False: always run at default_guidance (distilled models)
    negative: str = "never"  # when a negative prompt is encoded: "never", "with-cfg" (guidance above 1), "always"
    steps_fixed: bool = False  # the model runs its own fixed schedule, whatever steps it is given
    load_seconds: float | None = None  # prior; None: from memory_gb at a Mac SSD's pace


@dataclass(frozen=True)
class Preview:
    """How the in-loop latents map to a small RGB preview (worker/engines/mflux/previews.py)."""

    layout: str  # "packed": (1, (H/16)(W/16), C·4) 2×2 patches; "spatial": C × (H/8, W/8); "pixels": the image
    rgb: str | None = None  # which linear latent-to-RGB projection fits its VAE (None: first channels, stretched)
    scale: int = 8  # the VAE's downscaling factor for "spatial" latents


Arguments = Callable[[GenerationParams, Member], dict[str, Any]]


@dataclass(frozen=True)
class Family:
    name: str  # "flux1": what /api/ls calls its loader
    title: str  # "FLUX.1"
    class_path: str  # "module:Class" of the mflux model
    cli: str  # the mflux command whose behaviour the server follows
    kind: ModelKind
    members: tuple[Member, ...]
    arguments: Arguments  # generate_image's keyword arguments for one task
    preview: Preview = field(default_factory=lambda: Preview("packed", "flux1"))
    size_step: int = 16
    min_side: int = 64
    max_side: int | None = None
    img2img: bool = False  # image_path + image_strength really start part-way from the image
    max_references: int = 0
    needs_image: bool = False
    takes_mask: bool = False
    prompt_cache: Callable[[GenerationParams], object] | None = None  # the key mflux caches the prompt under
    suffix: str = ""  # added to its registry keys when another family serves the same keys ("-edit")

    def member(self, key: str) -> Member:
        return next(m for m in self.members if m.key == key)


# -- building generate_image's arguments ------------------------------------------------------------------------


def basic(params: GenerationParams) -> dict[str, Any]:
    return {
        "seed": int(params.seed),
        "prompt": params.prompt,
        "num_inference_steps": params.steps,
        "height": params.height,
        "width": params.width,
    }


def guided(params: GenerationParams, member: Member) -> dict[str, Any]:
    """seed, prompt, steps, size, and the guidance (the member's own for distilled models)."""
    guidance = params.guidance if member.guidance_adjustable else member.default_guidance
    return basic(params) | {"guidance": guidance}


def with_negative(kwargs: dict[str, Any], params: GenerationParams, member: Member) -> dict[str, Any]:
    """The negative prompt, where the model uses one (the request rules already dropped it where it does not)."""
    if member.negative != "never" and params.negative_prompt:
        kwargs["negative_prompt"] = params.negative_prompt
    return kwargs


def with_init_image(kwargs: dict[str, Any], params: GenerationParams) -> dict[str, Any]:
    """img2img as mflux's CLIs pass it: image_path and image_strength, only when there is an image."""
    if params.init_image is not None:
        kwargs["image_path"] = params.init_image
        kwargs["image_strength"] = params.image_strength
    return kwargs


def standard(params: GenerationParams, member: Member) -> dict[str, Any]:
    """The text-to-image families that take guidance, a negative prompt where they use one, and img2img."""
    return with_init_image(with_negative(guided(params, member), params, member), params)


def prompt_only(params: GenerationParams) -> object:
    return params.prompt
