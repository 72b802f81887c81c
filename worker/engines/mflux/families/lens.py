"""Lens (Comfy-Org): a 4-step turbo model with a GPT-OSS-20B text encoder and FLUX.2's VAE. Its generate_image
takes only seed, prompt, size and steps: no guidance, no negative prompt."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, basic

FAMILY = Family(
    name="lens",
    title="Lens",
    class_path="mflux.models.lens.variants.txt2img.lens_image:LensImage",
    cli="mflux-generate-lens",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(Member("lens-turbo", 1.0, seconds_per_step=3.0, memory_gb=20, guidance_adjustable=False),),
    arguments=lambda params, member: basic(params),
    preview=Preview("packed", "flux2"),
)

FAMILIES = (FAMILY,)
