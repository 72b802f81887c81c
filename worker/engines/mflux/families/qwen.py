"""Qwen-Image (Alibaba): the 20B 2512 text-to-image model and the Qwen-Image-Edit models (2509, 2511).

Qwen2.5-VL text encoder, a Wan-2.1-style 16-channel VAE, latents packed like FLUX.1. Qwen-Image always runs the
negative branch (a blank prompt when none is given): two passes a step at any guidance. 3.5 is mflux-generate-qwen's
default guidance, 2.5 mflux-generate-qwen-edit's."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, guided, standard, with_negative


def _prompt_key(params) -> object:
    return f"{params.prompt}|NEG|{params.negative_prompt or ' '}"


def _edit_arguments(params, member):
    kwargs = with_negative(guided(params, member), params, member)
    # image_path is only the metadata's reference, as mflux-generate-qwen-edit passes it.
    return kwargs | {"image_paths": list(params.references), "image_path": params.references[0]}


TEXT_TO_IMAGE = Family(
    name="qwen-image",
    title="Qwen-Image",
    class_path="mflux.models.qwen.variants.txt2img.qwen_image:QwenImage",
    cli="mflux-generate-qwen",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(Member("qwen-image", 3.5, seconds_per_step=19.0, memory_gb=57, negative="always"),),
    arguments=standard,
    preview=Preview("packed", "wan21"),
    img2img=True,
    prompt_cache=_prompt_key,
)

EDIT = Family(
    name="qwen-image-edit",
    title="Qwen-Image-Edit",
    class_path="mflux.models.qwen.variants.edit.qwen_image_edit:QwenImageEdit",
    cli="mflux-generate-qwen-edit",
    kind=ModelKind.EDIT,
    members=(
        Member("qwen-image-edit", 2.5, seconds_per_step=30.0, memory_gb=57, negative="always"),
        Member("qwen-image-edit-2511", 2.5, seconds_per_step=30.0, memory_gb=57, negative="always"),
    ),
    arguments=_edit_arguments,
    preview=Preview("packed", "wan21"),
    max_references=3,
    needs_image=True,
)

FAMILIES = (TEXT_TO_IMAGE, EDIT)
