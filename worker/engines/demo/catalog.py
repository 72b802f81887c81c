"""The demo engine's models: honestly labelled test instruments with different speeds and load times, so that
model switching, grouping and forecasts can be exercised without a GPU."""

from __future__ import annotations

from core.engines import EngineConfig
from core.models import Catalog, ModelInfo, ModelKind
from worker.engines.demo.costs import PROFILES, DemoCosts, profile_for

LABEL = "demo engine: procedural test pattern, not an image model"

COSTS: dict[str, DemoCosts] = {
    "demo": DemoCosts(),
    "demo-fast": DemoCosts(text_encode=0.3, step=0.01, step_per_mp=0.5, step_per_mp_sq=0.2, decode_per_mp=0.4,
                           load=0.5, scale=0.4),
    "demo-slow": DemoCosts(text_encode=0.8, step=0.05, step_per_mp=3.5, step_per_mp_sq=1.5, decode_per_mp=1.0,
                           load=2.5, scale=2.2),
    "demo-edit": DemoCosts(step_per_mp=1.6, load=1.2, scale=1.2),
    "demo-upscale": DemoCosts(text_encode=0.05, step=0.1, step_per_mp=0.8, step_per_mp_sq=0.1, load=0.6, scale=0.8),
}  # fmt: skip
DESCRIPTIONS = {
    "demo": "",
    "demo-fast": " (fast)",
    "demo-slow": " (slow)",
    "demo-edit": " (edits: blends its references, repaints a mask)",
    "demo-upscale": " (upscales: enlarges and sharpens)",
}
KINDS = {"demo-edit": ModelKind.EDIT, "demo-upscale": ModelKind.UPSCALE}
DEFAULT = "demo"


def model_info(name: str, speed: float, profile: str = "formula") -> ModelInfo:
    rated = profile_for(profile, COSTS[name])
    kind = KINDS.get(name, ModelKind.TEXT_TO_IMAGE)
    return ModelInfo(
        name=name,
        engine="demo",
        family="demo",
        kind=kind,
        img2img=kind is ModelKind.TEXT_TO_IMAGE,
        max_references=4 if kind is ModelKind.EDIT else 0,
        needs_image=kind is not ModelKind.TEXT_TO_IMAGE,
        takes_mask=kind is ModelKind.EDIT,
        steps_fixed=kind is ModelKind.UPSCALE,
        label=LABEL + DESCRIPTIONS[name],
        default_steps=1 if kind is ModelKind.UPSCALE else 4,
        size_step=2 if kind is ModelKind.UPSCALE else 16,  # as SeedVR2: any even size
        default_guidance=3.5,
        guidance_adjustable=True,
        negative_prompt="always",
        seconds_per_step_at_1mp=rated.rated_step_seconds() / speed,
        load_seconds=rated.load_seconds() / speed,
        memory_gb=0.0,
        is_demo=True,
    )


def catalog(config: EngineConfig) -> Catalog:
    from worker.engines.base import EngineLoadError

    if config.demo_speed <= 0:
        raise EngineLoadError("--demo-speed must be positive.")
    if config.demo_profile not in PROFILES:
        raise EngineLoadError(f"Unknown --demo-profile {config.demo_profile!r}; choose one of {', '.join(PROFILES)}.")
    models = tuple(model_info(name, config.demo_speed, config.demo_profile) for name in COSTS)
    default = config.model or DEFAULT
    if default not in COSTS:
        raise EngineLoadError(
            f"The demo engine has no model {default!r}; its models are {', '.join(COSTS)} (procedural test "
            "patterns). For a real model use --engine mflux."
        )
    names = frozenset(COSTS)
    unknown = [name for name in config.models if name not in names and name != "all"]
    if unknown:
        raise EngineLoadError(f"The demo engine has no model {unknown[0]!r}; its models are {', '.join(COSTS)}.")
    # Like the mflux engine: --models names what is offered (with the default), "all" or nothing offers all.
    offered = names if not config.models or "all" in config.models else frozenset(config.models) | {default}
    return Catalog(engine="demo", models=models, default=default, offered=offered, present=names)
