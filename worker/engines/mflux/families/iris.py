"""Iris (Sperid Labs): a 3B pixel-space model, turbo and base. Turbo runs its own fixed 4-step schedule and ignores
steps, guidance and negative prompts; base runs DPM-Solver++ with batched CFG (guidance 3.0, the negative prompt or
"")."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, guided, prompt_only, with_negative

FAMILY = Family(
    name="iris",
    title="Iris",
    class_path="mflux.models.iris.variants.txt2img.iris:Iris",
    cli="mflux-generate-iris",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(
        Member("iris-3b", 1.0, seconds_per_step=1.5, memory_gb=14, guidance_adjustable=False, steps_fixed=True),
        Member("iris-3b-base", 3.0, seconds_per_step=3.0, memory_gb=14, negative="with-cfg"),
    ),
    arguments=lambda params, member: with_negative(guided(params, member), params, member),
    preview=Preview("pixels"),
    prompt_cache=prompt_only,
)

FAMILIES = (FAMILY,)
