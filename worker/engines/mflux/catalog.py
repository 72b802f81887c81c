"""The mflux catalog: mflux's own registry (names, aliases, repos, pinned revisions, default steps) joined with
the family facts of families/ into `ModelInfo`s; and which of them this server offers."""

from __future__ import annotations

import functools

from core.engines import EngineConfig
from core.models import QUANTIZE_BITS, Catalog, ModelInfo
from worker.engines.mflux.families import FAMILIES
from worker.engines.mflux.family import Family, Member
from worker.engines.mflux.local_weights import models_at
from worker.engines.mflux.registry import RegistryEntry, read_registry
from worker.engines.mflux.weights import cached_revisions, present

DEFAULT_MODEL = "schnell"
SSD_GB_PER_SECOND = 2.5  # how fast a Mac reads weights: the load-time prior is their size at this pace, plus setup


@functools.cache
def served() -> dict[str, tuple[Family, Member, RegistryEntry]]:
    """Every model the server can run, by catalog name: its family, its member and mflux's registry entry."""
    registry = read_registry()
    models = {}
    for family in FAMILIES:
        for member in family.members:
            entry = registry.get(member.key)
            if entry is not None:  # an mflux without it: tests/test_mflux_catalog.py says so
                models[member.key + family.suffix] = (family, member, entry)
    return models


def model_info(name: str, family: Family, member: Member, entry: RegistryEntry) -> ModelInfo:
    return ModelInfo(
        name=name,
        engine="mflux",
        family=family.name,
        kind=family.kind,
        label=f"mflux {name} ({family.title})",
        default_steps=1 if member.steps_fixed and family.kind == "upscale" else entry.default_steps,
        default_guidance=member.default_guidance,
        guidance_adjustable=member.guidance_adjustable,
        negative_prompt=member.negative,
        seconds_per_step_at_1mp=member.seconds_per_step,
        load_seconds=member.load_seconds or 3.0 + member.memory_gb / SSD_GB_PER_SECOND,
        aliases=tuple(alias + family.suffix for alias in entry.aliases),
        size_step=family.size_step,
        min_side=family.min_side,
        max_side=family.max_side,
        steps_fixed=member.steps_fixed,
        img2img=family.img2img,
        max_references=family.max_references,
        needs_image=family.needs_image,
        takes_mask=family.takes_mask,
        memory_gb=member.memory_gb,
        repo=entry.repo,
        revision=entry.revision,
    )


def catalog(config: EngineConfig) -> Catalog:
    from worker.engines.base import EngineLoadError

    try:
        models = {name: model_info(name, *parts) for name, parts in served().items()}
    except ImportError as error:
        raise EngineLoadError(f"mflux cannot be imported here ({error}).") from error
    by_spelling = Catalog("mflux", tuple(models.values()), default=next(iter(models)))
    default = _default_model(config, by_spelling, models)
    _check_options(config)
    wanted = set()
    for name in config.models:
        if name == "all":
            wanted |= set(models)
        elif (model := by_spelling.find(name)) is not None:
            wanted.add(model.name)
        else:
            raise EngineLoadError(_unknown(name, models) + " (in --models)")
    cached = present(((m.name, m.repo, m.revision) for m in models.values() if m.repo), cached_revisions())
    if config.path:
        cached.add(default.name)
    offered = (wanted or cached) | {default.name}
    return Catalog("mflux", tuple(models.values()), default.name, frozenset(offered), frozenset(cached))


def _default_model(config: EngineConfig, catalog: Catalog, models: dict[str, ModelInfo]) -> ModelInfo:
    """--model, checked against what --path holds (or inferred from it): never one model's weights as another."""
    from worker.engines.base import EngineLoadError

    named = catalog.find(config.model) if config.model else None
    if config.model and named is None:
        raise EngineLoadError(_unknown(config.model, models))
    if not config.path:
        return named or catalog.get(DEFAULT_MODEL)
    candidates = models_at(config.path, catalog)
    if candidates is None:
        if named is None:
            raise EngineLoadError(
                f"Cannot tell which model the weights at --path {config.path} are (no mflux_model.json from "
                "mflux-save, not a Hugging Face cache snapshot): say it with --model."
            )
        return named  # the operator said which; nothing at the path contradicts it
    if named is not None and named.name not in candidates:
        raise EngineLoadError(
            f"--path {config.path} holds weights of {', '.join(sorted(candidates))}, not of --model {named.name}: "
            "pass the matching --model, or leave --model out to use the one at --path."
        )
    if named is None and len(candidates) > 1:
        raise EngineLoadError(
            f"The weights at --path {config.path} serve several models ({', '.join(sorted(candidates))}): "
            "choose one with --model."
        )
    return named or catalog.get(next(iter(candidates)))


def resolve(name: str) -> tuple[Family, Member, RegistryEntry]:
    return served()[name]


def _unknown(name: str, models: dict[str, ModelInfo]) -> str:
    return f"Unknown mflux model {name!r}; choose one of: {', '.join(models)}."


def _check_options(config: EngineConfig) -> None:
    from worker.engines.base import EngineLoadError

    if config.quantize is not None and config.quantize not in QUANTIZE_BITS:
        raise EngineLoadError(
            f"--quantize {config.quantize} is not supported by mflux; use one of "
            f"{', '.join(map(str, QUANTIZE_BITS))} bits, or leave it out for full precision."
        )
    if config.lora_scales and not config.lora_paths:
        raise EngineLoadError("LoRA scales were given without any LoRA paths.")
    # mflux would pad or truncate a mismatched list with only a printed warning.
    if config.lora_scales and len(config.lora_scales) != len(config.lora_paths):
        raise EngineLoadError(
            f"{len(config.lora_paths)} LoRA path(s) but {len(config.lora_scales)} LoRA scale(s): give one scale per "
            "path, or none for 1.0 each."
        )
