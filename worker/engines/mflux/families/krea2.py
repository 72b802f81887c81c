"""Krea 2 (Krea): turbo (8 steps) and raw, an ~11B single-stream transformer on the Qwen-Image VAE, latents
spatial. mflux-generate-krea2 runs guidance 1.0, at which the unconditional branch, and so the negative prompt, is
skipped: a negative prompt takes effect only with guidance other than 1 (then two passes a step). Guidance below 1
is allowed by mflux and weakens the prompt (CFG interpolates towards the unconditional prediction)."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, standard

FAMILY = Family(
    name="krea-2",
    title="Krea 2",
    class_path="mflux.models.krea2.variants.txt2img.krea2:Krea2",
    cli="mflux-generate-krea2",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(
        Member("krea-2", 1.0, seconds_per_step=5.5, memory_gb=38, negative="with-cfg"),
        Member("krea-2-raw", 1.0, seconds_per_step=5.5, memory_gb=38, negative="with-cfg"),
    ),
    arguments=standard,
    preview=Preview("spatial", "wan21"),
    img2img=True,
    prompt_cache=lambda params: (params.prompt, params.negative_prompt, params.guidance),
)

FAMILIES = (FAMILY,)
