"""FLUX.1 (Black Forest Labs): schnell, dev, Krea-dev, and the Kontext (edit) and Fill (inpaint) variants.

12B transformer, T5-XXL + CLIP text encoders, 16-channel VAE; latents packed as 2×2 patches (64 per token).
Guidance is distilled into the model (one pass; schnell has no guidance embedder); `Flux1.generate_image` accepts
`negative_prompt` and never uses it, so none of these takes one. Guidance 3.5 is mflux-generate's default
(`defaults.GUIDANCE_SCALE`), 2.5 mflux-generate-kontext's, 30 mflux-generate-fill's.
"""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview, guided, prompt_only, standard

TEXT_TO_IMAGE = Family(
    name="flux1",
    title="FLUX.1",
    class_path="mflux.models.flux.variants.txt2img.flux:Flux1",
    cli="mflux-generate",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(
        # The anchor of every prior: mflux's README times 2 steps of bf16 schnell at 1024² at ~20 s on an M3 Max
        # including the load, which leaves ~6 s a step; its FLOP count (~105 TFLOP a step) agrees.
        Member("schnell", 3.5, seconds_per_step=6.0, memory_gb=34, guidance_adjustable=False),
        Member("dev", 3.5, seconds_per_step=6.3, memory_gb=34),
        Member("krea-dev", 3.5, seconds_per_step=6.3, memory_gb=34),
    ),
    arguments=standard,
    preview=Preview("packed", "flux1"),
    img2img=True,
    prompt_cache=prompt_only,
)

KONTEXT = Family(
    name="flux1-kontext",
    title="FLUX.1 Kontext",
    class_path="mflux.models.flux.variants.kontext.flux_kontext:Flux1Kontext",
    cli="mflux-generate-kontext",
    kind=ModelKind.EDIT,
    # The reference image doubles the sequence: about twice a step of dev.
    members=(Member("dev-kontext", 2.5, seconds_per_step=12.0, memory_gb=34),),
    # Kontext starts from pure noise: image_strength would only skip steps, so it is never passed (as its CLI).
    arguments=lambda params, member: guided(params, member) | {"image_path": params.references[0]},
    preview=Preview("packed", "flux1"),
    max_references=1,
    needs_image=True,
    prompt_cache=prompt_only,
)

FILL = Family(
    name="flux1-fill",
    title="FLUX.1 Fill",
    class_path="mflux.models.flux.variants.fill.flux_fill:Flux1Fill",
    cli="mflux-generate-fill",
    kind=ModelKind.INPAINT,
    members=(Member("dev-fill", 30.0, seconds_per_step=6.5, memory_gb=34),),
    arguments=lambda params, member: (
        guided(params, member) | {"image_path": params.init_image, "masked_image_path": params.mask}
    ),
    preview=Preview("packed", "flux1"),
    needs_image=True,
    takes_mask=True,
    prompt_cache=prompt_only,
)

FAMILIES = (TEXT_TO_IMAGE, KONTEXT, FILL)
