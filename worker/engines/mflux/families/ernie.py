"""ERNIE-Image (Baidu): base (50 steps) and turbo (8). FLUX.2's VAE, latents 2×2-patchified per 16×16 pixels.
The class defaults to guidance 1.0 even for the base model; mflux-generate-ernie-image runs 4.0 (batched CFG with
the negative prompt or " "), so the server does too. Turbo must run at 1.0."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, standard

FAMILY = Family(
    name="ernie-image",
    title="ERNIE-Image",
    class_path="mflux.models.ernie_image.variants.txt2img.ernie_image:ErnieImage",
    cli="mflux-generate-ernie-image",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(
        Member("ernie-image", 4.0, seconds_per_step=8.0, memory_gb=22, negative="with-cfg"),
        Member("ernie-image-turbo", 1.0, seconds_per_step=4.0, memory_gb=22, guidance_adjustable=False),
    ),
    arguments=standard,
    preview=Preview("patched", "flux2", scale=16),
    img2img=True,
    prompt_cache=lambda params: (params.prompt, params.negative_prompt, params.guidance),
)

FAMILIES = (FAMILY,)
