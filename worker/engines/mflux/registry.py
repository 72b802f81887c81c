"""What mflux itself says about its models: its ModelConfig registry (names, aliases, Hugging Face repos, whether
guidance is supported), its CLI's default steps and its pinned revisions.

Read at start-up in the server process: these modules import `mlx.core` but no model code (about 0.2 s), so an
mflux upgrade updates names, aliases, repos, revisions and default steps here without a change of ours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistryEntry:
    key: str  # canonical name
    aliases: tuple[str, ...]
    repo: str  # Hugging Face repo id of the weights
    revision: str | None  # the commit mflux pins
    supports_guidance: bool | None  # None: the registry does not say (Qwen-Image)
    default_steps: int  # what mflux's CLIs use when --steps is not given


def read_registry() -> dict[str, RegistryEntry]:
    """Every model in mflux's registry, by canonical name. Raises ImportError when mflux is not importable."""
    from mflux.cli.defaults import defaults
    from mflux.models.common.config.model_config import AVAILABLE_MODELS
    from mflux.models.common.resolution.model_revisions import ModelRevisions

    entries = {}
    for key, config in AVAILABLE_MODELS.items():
        aliases = tuple(alias for alias in config.aliases if alias != key)
        entries[key] = RegistryEntry(
            key=key,
            aliases=aliases,
            repo=config.model_name,
            revision=ModelRevisions.get(config.model_name),
            supports_guidance=config.supports_guidance,
            default_steps=defaults.model_inference_steps(key),
        )
    return entries


def mflux_version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("mflux")
    except importlib.metadata.PackageNotFoundError:
        return None
