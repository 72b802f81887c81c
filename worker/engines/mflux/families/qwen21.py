"""Qwen-Image 2.1 (Alibaba): base (40 steps) and turbo (8 steps, no CFG), and its edit pipeline with masks.

A 64-channel VAE at 1/16, latents as one unpatched token per 16×16 pixels. True CFG only above guidance 1 with a
negative prompt (mflux-generate-qwen-2.1's default is 1.0: one pass, no negative). Turbo refuses any guidance but
1. The edit pipeline needs multiples of 32 and, above guidance 1, a negative prompt (an empty one will do)."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, basic, prompt_only, standard


def _edit_arguments(params, member):
    guidance = params.guidance if member.guidance_adjustable else member.default_guidance
    kwargs = basic(params) | {"guidance": guidance, "image_paths": list(params.references)}
    if guidance > 1.0:
        kwargs["negative_prompt"] = params.negative_prompt or ""  # required above 1 (mflux raises otherwise)
    elif params.negative_prompt:
        kwargs["negative_prompt"] = params.negative_prompt
    if params.mask is not None:
        kwargs["mask_image"] = params.mask  # white: repaint, black: keep (as mflux-generate-qwen-2.1-edit)
    return kwargs


def _members(edit: bool) -> tuple[Member, ...]:
    factor = 1.8 if edit else 1.0
    return (
        Member("qwen-image-2.1", 1.0, seconds_per_step=10.0 * factor, memory_gb=57, negative="with-cfg"),
        Member("qwen-image-2.1-turbo", 1.0, seconds_per_step=10.0 * factor, memory_gb=57, guidance_adjustable=False),
    )


TEXT_TO_IMAGE = Family(
    name="qwen-image-2.1",
    title="Qwen-Image 2.1",
    class_path="mflux.models.qwen21.variants.txt2img.qwen_image_21:QwenImage21",
    cli="mflux-generate-qwen-2.1",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=_members(edit=False),
    arguments=standard,
    preview=Preview("tokens", None, scale=16),
    img2img=True,
    prompt_cache=prompt_only,
)

EDIT = Family(
    name="qwen-image-2.1-edit",
    suffix="-edit",
    title="Qwen-Image 2.1 edit",
    class_path="mflux.models.qwen21.variants.edit.qwen_image_21_edit:QwenImage21Edit",
    cli="mflux-generate-qwen-2.1-edit",
    kind=ModelKind.EDIT,
    members=_members(edit=True),
    arguments=_edit_arguments,
    preview=Preview("tokens", None, scale=16),
    size_step=32,
    max_references=10,
    needs_image=True,
    takes_mask=True,
)

FAMILIES = (TEXT_TO_IMAGE, EDIT)
