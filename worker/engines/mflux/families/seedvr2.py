"""SeedVR2 (ByteDance): one-step diffusion upscaling of an image, 3B and 7B. No prompt; `resolution` is the
short edge of the result (the long one keeps the aspect ratio); the colours are corrected back to the input."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview


def _arguments(params, member):
    return {"seed": int(params.seed), "image_path": params.init_image, "resolution": min(params.width, params.height)}


FAMILY = Family(
    name="seedvr2",
    title="SeedVR2",
    class_path="mflux.models.seedvr2.variants.upscale.seedvr2:SeedVR2",
    cli="mflux-upscale-seedvr2",
    kind=ModelKind.UPSCALE,
    members=(
        Member("seedvr2-3b", 1.0, seconds_per_step=15.0, memory_gb=8, guidance_adjustable=False, steps_fixed=True),
        Member("seedvr2-7b", 1.0, seconds_per_step=35.0, memory_gb=16, guidance_adjustable=False, steps_fixed=True),
    ),
    arguments=_arguments,
    preview=Preview("none"),
    size_step=2,
    needs_image=True,
)

FAMILIES = (FAMILY,)
