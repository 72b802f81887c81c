"""MOSS-Image (OpenMOSS): SFT and base, a Qwen3.5 text model and FLUX.2's VAE with MOSS's decoder. mflux's CLI
runs guidance 3.0; the unconditional pass (negative prompt or "") skips layers (`uncond_skip_layers`)."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, guided, prompt_only, with_negative

FAMILY = Family(
    name="moss-image",
    title="MOSS-Image",
    class_path="mflux.models.moss_image.variants.txt2img.moss_image:MOSSImage",
    cli="mflux-generate-moss-image",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(
        Member("moss-image-sft", 3.0, seconds_per_step=8.0, memory_gb=24, negative="with-cfg"),
        Member("moss-image-base", 3.0, seconds_per_step=8.0, memory_gb=24, negative="with-cfg"),
    ),
    arguments=lambda params, member: with_negative(guided(params, member), params, member),
    preview=Preview("patched", "flux2", scale=16),
    prompt_cache=prompt_only,
)

FAMILIES = (FAMILY,)
