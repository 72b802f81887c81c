"""Anima (circlestone-labs): turbo (10 steps, guidance 1.0), aesthetic and base (30 steps, 4.0); a small 2B model
with a Qwen3-0.6B text encoder on the Qwen-Image VAE. The negative prompt (or "") is encoded whenever guidance is
not 1."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, guided, prompt_only, with_negative

FAMILY = Family(
    name="anima",
    title="Anima",
    class_path="mflux.models.anima.variants.txt2img.anima:Anima",
    cli="mflux-generate-anima",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(
        Member("anima-turbo", 1.0, seconds_per_step=1.0, memory_gb=6, negative="with-cfg"),
        Member("anima-aesthetic", 4.0, seconds_per_step=2.0, memory_gb=6, negative="with-cfg"),
        Member("anima-base", 4.0, seconds_per_step=2.0, memory_gb=6, negative="with-cfg"),
    ),
    arguments=lambda params, member: with_negative(guided(params, member), params, member),
    preview=Preview("spatial", "wan21"),
    prompt_cache=prompt_only,
)

FAMILIES = (FAMILY,)
