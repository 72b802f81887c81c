"""Ming-Image design (inclusionAI): 12 steps, RGBA output (mflux's MingVAE). Guidance 1.0 runs without CFG; above 1
the unconditional pass zeroes both condition streams: no negative text."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, basic

FAMILY = Family(
    name="ming",
    title="Ming-Image",
    class_path="mflux.models.ming_image.variants.ming_image:MingImage",
    cli="mflux-generate-ming",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(Member("ming-image-design", 1.0, seconds_per_step=3.0, memory_gb=20),),
    arguments=lambda params, member: basic(params) | {"guidance": params.guidance},
    preview=Preview("spatial", "wan21"),
)

FAMILIES = (FAMILY,)
