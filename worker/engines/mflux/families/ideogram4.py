"""Ideogram 4 (fp8 weights): two transformers (conditional and unconditional, zeroed text features instead of a
negative prompt). mflux-generate-ideogram4 samples with presets that vary guidance per step; the server uses the
preset whose step count was asked for (12, 20, 48) at the default guidance, and otherwise mflux's constant-guidance
mode. Sides must be within 256..2048."""

from __future__ import annotations

from core.models import ModelKind
from worker.engines.mflux.family import Family, Member, Preview

PRESETS = {12: "V4_TURBO_12", 20: "V4_DEFAULT_20", 48: "V4_QUALITY_48"}
DEFAULT_GUIDANCE = 7.0  # what mflux's constant-guidance mode uses when none is given


def _arguments(params, member):
    kwargs = {"seed": int(params.seed), "prompt": params.prompt, "height": params.height, "width": params.width}
    preset = PRESETS.get(params.steps)
    if preset is not None and params.guidance == member.default_guidance:
        return kwargs | {"preset": preset}
    return kwargs | {"num_inference_steps": params.steps, "guidance": params.guidance}


FAMILY = Family(
    name="ideogram4",
    title="Ideogram 4",
    class_path="mflux.models.ideogram4.variants.txt2img.ideogram4:Ideogram4",
    cli="mflux-generate-ideogram4",
    kind=ModelKind.TEXT_TO_IMAGE,
    members=(Member("ideogram-4-fp8", DEFAULT_GUIDANCE, seconds_per_step=10.0, memory_gb=30),),
    arguments=_arguments,
    preview=Preview("packed", "flux2"),
    min_side=256,
    max_side=2048,
    prompt_cache=lambda params: (params.prompt, params.width, params.height),
)

FAMILIES = (FAMILY,)
