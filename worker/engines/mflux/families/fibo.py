"""FIBO (Bria): FIBO and FIBO-lite text-to-image, and FIBO-Edit. Trained on JSON captions: mflux's prompt
encoder parses the prompt as JSON (its CLI writes plain text into JSON with a second model, FIBO-VLM, which the
server does not load). A plain-text prompt is wrapped as `{"prompt": ...}`, as the original mflux-server did; a
JSON prompt is passed unchanged. Batched CFG (one call, batch 2) with mflux's default negative above guidance 1;
lite always runs at 1.0."""

from __future__ import annotations

import json

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, guided, standard, with_negative


def as_caption(prompt: str, key: str) -> str:
    try:
        parsed = json.loads(prompt)
    except json.JSONDecodeError:
        parsed = None
    return prompt if isinstance(parsed, dict) else json.dumps({key: prompt})


def _arguments(params, member):
    return standard(params, member) | {"prompt": as_caption(params.prompt, "prompt")}


def _edit_arguments(params, member):
    kwargs = with_negative(guided(params, member), params, member)
    kwargs |= {"prompt": as_caption(params.prompt, "edit_instruction"), "image_path": params.references[0]}
    if params.mask is not None:
        kwargs["mask_path"] = params.mask
    return kwargs


TEXT_TO_IMAGE = Family(
    name="fibo",
    title="FIBO",
    class_path="mflux.models.fibo.variants.txt2img.fibo:FIBO",
    cli="mflux-generate-fibo",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(
        Member("fibo", 5.0, seconds_per_step=8.0, memory_gb=22, negative="with-cfg"),
        Member("fibo-lite", 1.0, seconds_per_step=4.0, memory_gb=22, guidance_adjustable=False),
    ),
    arguments=_arguments,
    preview=Preview("tokens", None, scale=16),
    img2img=True,
)

EDIT = Family(
    name="fibo-edit",
    title="FIBO-Edit",
    class_path="mflux.models.fibo.variants.edit.fibo_edit:FIBOEdit",
    cli="mflux-generate-fibo-edit",
    kind=ModelKind.EDIT,
    members=(
        Member("fibo-edit", 3.5, seconds_per_step=10.0, memory_gb=22, negative="with-cfg"),
        Member("fibo-edit-rmbg", 1.0, seconds_per_step=5.0, memory_gb=22, negative="with-cfg"),
    ),
    arguments=_edit_arguments,
    preview=Preview("tokens", None, scale=16),
    max_references=1,
    needs_image=True,
    takes_mask=True,
)

FAMILIES = (TEXT_TO_IMAGE, EDIT)
