"""Which model the weights at --path are, so that a checkpoint of one model is never run as another."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.models import Catalog

_CACHE_FOLDER = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)")


def models_at(path: str, catalog: Catalog) -> set[str] | None:
    """The catalog models the weights at `path` can be (None: nothing there tells)."""
    root = Path(path).expanduser()
    saved = root / "mflux_model.json"  # written by mflux-save
    if saved.is_file():
        try:
            info = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        for name in (info.get("model_name"), info.get("base_model")):
            if isinstance(name, str) and (model := catalog.find(name)) is not None:
                return {model.name}
        return None
    match = _CACHE_FOLDER.search(str(root.resolve()))  # a snapshot inside a Hugging Face cache
    if match:
        repo = f"{match['org']}/{match['name']}"
        found = {model.name for model in catalog.models if model.repo == repo}
        return found or None
    return None
