"""FIBO 2 (Bria): the 2.0 dev text-to-image model and the 2.0 edit-turbo model. Plain-text prompts are accepted
(JSON captions are the trained format). Above guidance 1 a second pass runs with mflux's default negative caption;
guidance defaults to 5.0 (dev) and 1.0 (edit-turbo, one pass)."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, guided, prompt_only, with_negative


def _arguments(params, member):
    return with_negative(guided(params, member), params, member)


def _edit_arguments(params, member):
    kwargs = _arguments(params, member) | {"image_paths": list(params.references)}
    if params.mask is not None and len(params.references) == 1:
        # mflux takes a mask only with one image; with several, the worker's composite keeps the mask alone
        kwargs["mask_path"] = params.mask
    return kwargs


TEXT_TO_IMAGE = Family(
    name="fibo2",
    title="FIBO 2",
    class_path="mflux.models.fibo2.variants.txt2img.fibo2:Fibo2",
    cli="mflux-generate-fibo2",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(Member("fibo2", 5.0, seconds_per_step=8.0, memory_gb=24, negative="with-cfg"),),
    arguments=_arguments,
    preview=Preview("spatial", "flux2"),
    prompt_cache=prompt_only,
)

EDIT = Family(
    name="fibo2-edit",
    title="FIBO 2 edit",
    class_path="mflux.models.fibo2.variants.edit.fibo2_edit:Fibo2Edit",
    cli="mflux-generate-fibo2-edit",
    kind=ModelKind.EDIT,
    members=(Member("fibo2-edit-turbo", 1.0, seconds_per_step=6.0, memory_gb=24, guidance_adjustable=False),),
    arguments=_edit_arguments,
    preview=Preview("spatial", "flux2"),
    max_references=5,
    needs_image=True,
    takes_mask=True,
)

FAMILIES = (TEXT_TO_IMAGE, EDIT)
