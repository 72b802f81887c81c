"""FLUX.3 klein (Black Forest Labs): distilled (a flow map, 16 steps) and base (50 steps, CFG), and their edit
pipeline. Qwen3-VL text encoder, FLUX.2's VAE. No negative prompt: the base model runs CFG against "".
The distilled model ignores guidance (`_resolve_sampling` forces None); the base one defaults to 3.5."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, basic, prompt_only


def _arguments(params, member):
    guidance = params.guidance if member.guidance_adjustable else None
    return basic(params) | {"guidance": guidance}


def _members(edit: bool) -> tuple[Member, ...]:
    factor = 2.0 if edit else 1.0
    return (
        Member("flux3-image-klein", 3.5, seconds_per_step=2.5 * factor, memory_gb=16, guidance_adjustable=False),
        Member("flux3-image-klein-base", 3.5, seconds_per_step=5.0 * factor, memory_gb=16),
    )


TEXT_TO_IMAGE = Family(
    name="flux3-klein",
    title="FLUX.3 klein",
    class_path="mflux.models.flux3.variants.txt2img.flux3_klein:Flux3Klein",
    cli="mflux-generate-flux3",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=_members(edit=False),
    arguments=_arguments,
    preview=Preview("packed", "flux2"),
    prompt_cache=prompt_only,
)

EDIT = Family(
    name="flux3-klein-edit",
    suffix="-edit",
    title="FLUX.3 klein edit",
    class_path="mflux.models.flux3.variants.edit.flux3_klein_edit:Flux3KleinEdit",
    cli="mflux-generate-flux3-edit",
    kind=ModelKind.EDIT,
    members=_members(edit=True),
    arguments=lambda params, member: _arguments(params, member) | {"image_paths": list(params.references)},
    preview=Preview("packed", "flux2"),
    max_references=10,  # mflux's MAX_REFERENCES
    needs_image=True,
    prompt_cache=prompt_only,
)

FAMILIES = (TEXT_TO_IMAGE, EDIT)
