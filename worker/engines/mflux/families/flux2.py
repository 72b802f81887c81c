"""FLUX.2 klein (Black Forest Labs): 4B and 9B transformers, distilled and base, and their edit pipeline.

Qwen3 text encoder, 32-channel VAE packed as 128 channels per token. `Flux2Klein.generate_image` has no negative
prompt: above guidance 1 it runs CFG against a blank prompt. The distilled models must run at 1.0
(mflux-generate-flux2 refuses other values for names without "base"); the base models need CFG, and 4.0 is what
the diffusers reference pipeline uses for klein-base (mflux's CLI default of 1.0 would switch CFG off).
"""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, guided, standard


def _members(edit: bool) -> tuple[Member, ...]:
    factor = 2.0 if edit else 1.0  # a reference image about doubles the tokens a step attends over
    return (
        Member("flux2-klein-4b", 1.0, seconds_per_step=2.1 * factor, memory_gb=16, guidance_adjustable=False),
        Member("flux2-klein-9b", 1.0, seconds_per_step=4.8 * factor, memory_gb=34, guidance_adjustable=False),
        Member("flux2-klein-9b-kv", 1.0, seconds_per_step=4.8 * factor, memory_gb=34, guidance_adjustable=False),
        Member("flux2-klein-base-4b", 4.0, seconds_per_step=4.2 * factor, memory_gb=16),
        Member("flux2-klein-base-9b", 4.0, seconds_per_step=9.5 * factor, memory_gb=34),
    )


TEXT_TO_IMAGE = Family(
    name="flux2-klein",
    title="FLUX.2 klein",
    class_path="mflux.models.flux2.variants.txt2img.flux2_klein:Flux2Klein",
    cli="mflux-generate-flux2",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=_members(edit=False),
    arguments=standard,
    preview=Preview("packed", "flux2"),
    img2img=True,
)

EDIT = Family(
    name="flux2-klein-edit",
    suffix="-edit",
    title="FLUX.2 klein edit",
    class_path="mflux.models.flux2.variants.edit.flux2_klein_edit:Flux2KleinEdit",
    cli="mflux-generate-flux2-edit",
    kind=ModelKind.EDIT,
    members=_members(edit=True),
    # Each reference keeps its own aspect ratio; image_strength would skip steps from pure noise: never passed.
    arguments=lambda params, member: guided(params, member) | {"image_paths": list(params.references)},
    preview=Preview("packed", "flux2"),
    max_references=4,
    needs_image=True,
)

FAMILIES = (TEXT_TO_IMAGE, EDIT)
