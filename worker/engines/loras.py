"""The operator's LoRA library: every `*.safetensors` file under the library folders, by its name (the file
name without the extension), as mflux's own LoRA library does (`LORA_LIBRARY_PATH`, `mflux-lora-library`).

Clients name a LoRA; the server looks the name up here. A client's path never reaches the file system.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

LIBRARY_ENV = "LORA_LIBRARY_PATH"  # mflux's: folders separated by ":"


def library_folders(configured: Iterable[str]) -> list[Path]:
    folders = [Path(folder).expanduser() for folder in configured]
    if not folders and os.environ.get(LIBRARY_ENV):
        folders = [Path(part.strip()).expanduser() for part in os.environ[LIBRARY_ENV].split(":") if part.strip()]
    return folders


def discover(folders: Iterable[Path]) -> dict[str, Path]:
    """name → file. Earlier folders win over later ones, as in mflux; mflux-save shards ("transformer/0") are
    not LoRAs and are skipped."""
    found: dict[str, Path] = {}
    for folder in reversed(list(folders)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.safetensors")):
            if path.stem.isdigit() and path.parent.name == "transformer":
                continue
            found[path.stem] = path.resolve()
    return found
