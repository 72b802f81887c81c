"""Boogu-Image turbo: 4 steps of a DMD predict/renoise loop on the FLUX.1 VAE; no guidance, no negative prompt."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, basic

FAMILY = Family(
    name="boogu",
    title="Boogu-Image",
    class_path="mflux.models.boogu.variants.txt2img.boogu_image:BooguImage",
    cli="mflux-generate-boogu",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(Member("boogu-image-turbo", 1.0, seconds_per_step=4.0, memory_gb=30, guidance_adjustable=False),),
    arguments=lambda params, member: basic(params),
    preview=Preview("spatial", "flux1"),
)

FAMILIES = (FAMILY,)
