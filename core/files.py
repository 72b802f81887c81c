"""Writing files so that readers see the whole file or none."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TEMP_SUFFIX = ".partial"


def write_atomically(path: Path, data: bytes) -> None:
    """Write beside the file, then rename over it. A parent directory removed under a running server (someone
    cleaning up) is made again rather than failing every later write."""
    partial = path.with_name(path.name + TEMP_SUFFIX)
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    except BaseException:
        # A half-written file on a full disk would keep it full: give its space back before reporting.
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
