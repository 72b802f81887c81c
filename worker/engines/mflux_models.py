"""The text-to-image models the mflux engine supports, as plain data.

This module must not import mflux: the API process reads it to describe the engine without loading model
code. Every row was checked against mflux 0.24.0 (`ModelConfig.from_name`, `mflux.cli.defaults.defaults`,
each class's `__init__` and `generate_image`, and each family's CLI); `tests/test_mflux_engine.py` checks
it again against the installed mflux, so an upgrade that changes a fact fails there, not in production.

Seconds per step at one megapixel (1024x1024) are the forecaster's prior, a rough guess for an M3/M4 Max
class GPU, replaced by measurements after the first image. The anchor is FLUX.1 (a 12B transformer):
mflux's README times unquantized schnell, 2 steps at 1024x1024, at ~20 s on an M3 Max including loading
the weights, which leaves roughly 6 s per step; that matches its FLOP count (~105 TFLOP per step at
4096 image tokens, on a GPU doing ~16 TFLOPS). The other rows scale that by transformer size and by the
number of transformer passes per step (two where classifier-free guidance runs by default). mflux's own
FLUX.2 README is a cross-check: klein-4B takes about 20 s for 4 steps with prompt encoding on an M4 Pro,
which has about half the GPU of a Max. Quantization is not factored in: at 4096 tokens the matmuls are
compute-bound and MLX's quantized kernels are no faster there; the speed-up mflux reports for 8-bit
comes from not swapping on small-memory Macs.
"""

from __future__ import annotations

from dataclasses import dataclass

FLUX1_CLASS = "mflux.models.flux.variants.txt2img.flux:Flux1"
FLUX2_KLEIN_CLASS = "mflux.models.flux2.variants.txt2img.flux2_klein:Flux2Klein"
Z_IMAGE_CLASS = "mflux.models.z_image.variants.z_image:ZImage"
QWEN_IMAGE_CLASS = "mflux.models.qwen.variants.txt2img.qwen_image:QwenImage"
KREA2_CLASS = "mflux.models.krea2.variants.txt2img.krea2:Krea2"


@dataclass(frozen=True)
class ModelSpec:
    """One supported model: how to build it, its defaults, and how to preview its latents."""

    name: str  # canonical mflux name, as `ModelConfig.from_name` and `model_inference_steps` take it
    class_path: str  # "module:Class" of the mflux model
    default_steps: int
    default_guidance: float
    guidance_adjustable: bool  # False: the engine always passes `default_guidance`
    supports_negative_prompt: bool  # True only where mflux really encodes it (at the default guidance)
    seconds_per_step_at_1mp: float  # rough prior, see the module docstring
    aliases: tuple[str, ...]  # other spellings mflux accepts for this model
    # How the in-loop latents are laid out: "packed" = (1, (H/16)*(W/16), channels*4), 2x2 patches
    # flattened channel-major; "spatial" = channels by (H/8, W/8), with size-1 axes around them.
    latent_layout: str
    # Which linear latent-to-RGB projection previews this VAE's latents (None: first three channels).
    latent_rgb: str | None


MODELS: tuple[ModelSpec, ...] = (
    # FLUX.1: 12B transformer, T5 + CLIP text encoders, 16-channel VAE. Guidance is distilled into the
    # model (a single pass; schnell has no guidance embedder at all), and Flux1.generate_image accepts
    # `negative_prompt` but never uses it. Guidance 3.5 is `defaults.GUIDANCE_SCALE`, what
    # mflux-generate passes when --guidance is not given.
    ModelSpec(
        name="schnell",
        class_path=FLUX1_CLASS,
        default_steps=4,
        default_guidance=3.5,
        guidance_adjustable=False,
        supports_negative_prompt=False,
        seconds_per_step_at_1mp=6.0,  # the anchor: 12B, 4096 image + 256 text tokens
        aliases=(),
        latent_layout="packed",
        latent_rgb="flux1",
    ),
    ModelSpec(
        name="dev",
        class_path=FLUX1_CLASS,
        default_steps=25,
        default_guidance=3.5,
        guidance_adjustable=True,
        supports_negative_prompt=False,
        seconds_per_step_at_1mp=6.3,  # as schnell, with 512 text tokens instead of 256
        aliases=(),
        latent_layout="packed",
        latent_rgb="flux1",
    ),
    ModelSpec(
        name="krea-dev",
        class_path=FLUX1_CLASS,
        default_steps=25,
        default_guidance=3.5,
        guidance_adjustable=True,
        supports_negative_prompt=False,
        seconds_per_step_at_1mp=6.3,  # FLUX.1-dev architecture
        aliases=("dev-krea",),
        latent_layout="packed",
        latent_rgb="flux1",
    ),
    # FLUX.2 klein: 4B / 9B transformers, Qwen3 text encoder, 32-channel VAE packed as 128 channels.
    # Flux2Klein.generate_image has no negative_prompt; it runs CFG against a blank prompt only when
    # guidance > 1. The distilled models must run at 1.0 (mflux-generate-flux2 rejects anything else for
    # non-"base" models); the base models need CFG, and 4.0 is what the diffusers reference pipeline uses
    # for klein-base (mflux's CLI default of 1.0 would switch CFG off).
    ModelSpec(
        name="flux2-klein-4b",
        class_path=FLUX2_KLEIN_CLASS,
        default_steps=4,
        default_guidance=1.0,
        guidance_adjustable=False,
        supports_negative_prompt=False,
        seconds_per_step_at_1mp=2.1,  # 4B, one pass, 4096 + 512 tokens
        aliases=("flux2-klein", "klein-4b"),
        latent_layout="packed",
        latent_rgb="flux2",
    ),
    ModelSpec(
        name="flux2-klein-9b",
        class_path=FLUX2_KLEIN_CLASS,
        default_steps=4,
        default_guidance=1.0,
        guidance_adjustable=False,
        supports_negative_prompt=False,
        seconds_per_step_at_1mp=4.8,  # 9B, one pass
        aliases=("klein-9b",),
        latent_layout="packed",
        latent_rgb="flux2",
    ),
    ModelSpec(
        name="flux2-klein-base-4b",
        class_path=FLUX2_KLEIN_CLASS,
        default_steps=50,
        default_guidance=4.0,
        guidance_adjustable=True,
        supports_negative_prompt=False,
        seconds_per_step_at_1mp=4.2,  # 4B, two passes (CFG)
        aliases=("flux2-base-4b", "klein-base-4b"),
        latent_layout="packed",
        latent_rgb="flux2",
    ),
    ModelSpec(
        name="flux2-klein-base-9b",
        class_path=FLUX2_KLEIN_CLASS,
        default_steps=50,
        default_guidance=4.0,
        guidance_adjustable=True,
        supports_negative_prompt=False,
        seconds_per_step_at_1mp=9.5,  # 9B, two passes (CFG)
        aliases=("flux2-base-9b", "klein-base-9b"),
        latent_layout="packed",
        latent_rgb="flux2",
    ),
    # Z-Image: 6B single-stream transformer on the FLUX.1 VAE, latents kept spatial (16, 1, H/8, W/8).
    # Turbo is guidance-distilled: ZImage.generate_image forces guidance to 0.0 and never encodes a
    # negative prompt. The base model runs CFG (and encodes the negative prompt) only at guidance > 1;
    # 4.0 is mflux's own Z-Image README example (its CLI default of 0.0 would switch CFG off).
    ModelSpec(
        name="z-image-turbo",
        class_path=Z_IMAGE_CLASS,
        default_steps=9,
        default_guidance=0.0,
        guidance_adjustable=False,
        supports_negative_prompt=False,
        seconds_per_step_at_1mp=3.0,  # 6B, one pass
        aliases=("zimage-turbo",),
        latent_layout="spatial",
        latent_rgb="flux1",
    ),
    ModelSpec(
        name="z-image",
        class_path=Z_IMAGE_CLASS,
        default_steps=50,
        default_guidance=4.0,
        guidance_adjustable=True,
        supports_negative_prompt=True,
        seconds_per_step_at_1mp=6.0,  # 6B, two passes (CFG)
        aliases=("zimage",),
        latent_layout="spatial",
        latent_rgb="flux1",
    ),
    # Qwen-Image (2512): 20B transformer, Qwen2.5-VL text encoder, Wan-2.1-style 16-channel VAE, packed like
    # FLUX.1. QwenImage always runs the negative branch (a blank prompt when none is given), so two passes;
    # 3.5 is what its CLI passes when --guidance is not given.
    ModelSpec(
        name="qwen-image",
        class_path=QWEN_IMAGE_CLASS,
        default_steps=20,
        default_guidance=3.5,
        guidance_adjustable=True,
        supports_negative_prompt=True,
        seconds_per_step_at_1mp=19.0,  # 20B, two passes, unpadded text tokens
        aliases=("qwen", "qwen-image-2512", "qwen-2512"),
        latent_layout="packed",
        latent_rgb="wan21",
    ),
    # Krea 2 Turbo: ~11B single-stream transformer (28 blocks of 6144 features in mflux's Krea2Transformer)
    # on the Qwen-Image VAE, latents spatial (1, 16, H/8, W/8). Its CLI default guidance is 1.0, at which
    # the unconditional branch (and the negative prompt) is skipped; above 1.0 it runs CFG.
    ModelSpec(
        name="krea-2",
        class_path=KREA2_CLASS,
        default_steps=8,
        default_guidance=1.0,
        guidance_adjustable=True,
        supports_negative_prompt=True,
        seconds_per_step_at_1mp=5.5,  # ~11B, one pass at the default guidance
        aliases=("krea2",),
        latent_layout="spatial",
        latent_rgb="wan21",
    ),
)

MODEL_NAMES: tuple[str, ...] = tuple(spec.name for spec in MODELS)

_BY_NAME: dict[str, ModelSpec] = {spelling.lower(): spec for spec in MODELS for spelling in (spec.name, *spec.aliases)}


def resolve_model(name: str) -> ModelSpec:
    """The spec for a canonical model name or alias (case does not matter)."""
    spec = _BY_NAME.get(name.strip().lower())
    if spec is None:
        raise ValueError(f"Unknown mflux model {name!r}; choose one of: {', '.join(MODEL_NAMES)}.")
    return spec
