"""What to tell the operator when mflux or a model cannot be loaded: what went wrong and how to fix it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core.models import ModelInfo, Variant

MFLUX_VERSION = "0.24.0"  # the mflux this server is written and tested against (scripts/install_mflux.py)
INSTALL_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "install_mflux.py"


def install_hint() -> str:
    script = f"{sys.executable} {INSTALL_SCRIPT}"
    if sys.platform == "darwin":
        return f"Install it with `{sys.executable} -m pip install mflux=={MFLUX_VERSION}` or `{script}`."
    return (
        "On Linux mflux needs MLX's CPU build: a plain `pip install mflux` pulls the CUDA build, which fails "
        f"without an NVIDIA driver. Install it with `{script}`."
    )


def incompatible_mflux(model: ModelInfo, error: Exception, installed: str | None) -> str:
    """A TypeError or AttributeError while building the model: the installed mflux is not the one we speak to."""
    return (
        f"Could not build the mflux model {model.name!r}: {type(error).__name__}: {error}. This looks like an "
        f"mflux version this server does not know (installed: {installed or 'unknown'}; written for "
        f"{MFLUX_VERSION}), not like missing weights. {install_hint()}"
    )


def weights_error(model: ModelInfo, variant: Variant, error: Exception) -> str:
    problem = f"{type(error).__name__}: {str(error).strip().rstrip('.')}"
    if variant.path:
        return (
            f"Could not load the mflux model {model.name!r} from --path {variant.path}: {problem}. "
            f"Point --path at a directory with the model's weights (a download of the Hugging Face repo "
            f"{model.repo}, or a model saved with mflux-save), or leave --path out to use the Hugging Face cache."
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    revision = f" at revision {model.revision[:12]}" if model.revision else ""
    return (
        f"Could not load the mflux model {model.name!r} from the Hugging Face repo {model.repo}{revision}: "
        f"{problem}. mflux downloads the weights on first use (tens of GB; gated repos need `hf auth login` and "
        "accepted terms), so run it once with network access to fill the cache (e.g. "
        f"`mflux-generate --model {model.name} --prompt test --steps 1`), or pass --path to local weights; "
        "`mflux-check` reports what is cached. "
        + (
            "HF_HUB_OFFLINE is set, so only the local cache was tried."
            if offline
            else "Once the weights are cached, HF_HUB_OFFLINE=1 keeps later starts off the network."
        )
    )
