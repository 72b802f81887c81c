"""Z-Image (Tongyi-MAI): a 6B single-stream transformer on the FLUX.1 VAE, latents kept spatial.

Turbo is guidance-distilled: `ZImage.generate_image` forces guidance to 0.0 and never encodes a negative prompt.
The base model runs CFG (and encodes the negative prompt) only above guidance 1; 4.0 is mflux's own Z-Image
README example (its CLI default, None, would switch CFG off)."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, standard

FAMILY = Family(
    name="z-image",
    title="Z-Image",
    class_path="mflux.models.z_image.variants.z_image:ZImage",
    cli="mflux-generate-z-image",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(
        Member("z-image-turbo", 0.0, seconds_per_step=3.0, memory_gb=20, guidance_adjustable=False),
        Member("z-image", 4.0, seconds_per_step=6.0, memory_gb=20, negative="with-cfg"),
    ),
    arguments=standard,
    preview=Preview("spatial", "flux1"),
    img2img=True,
)

FAMILIES = (FAMILY,)
