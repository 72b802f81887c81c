"""Previews of the running task: a small JPEG, rewritten at most every PREVIEW_INTERVAL seconds."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

from PIL import Image

from core.files import write_atomically
from worker.engines.base import PreviewSource
from worker.status_table import StatusTable

PREVIEW_SIZE = 256  # longest side of a preview, in pixels
PREVIEW_INTERVAL = 0.5  # seconds between previews at most

log = logging.getLogger(__name__)


class PreviewWriter:
    def __init__(self, path: Path, table: StatusTable) -> None:
        self._path = path
        self._table = table
        self._last = 0.0

    def maybe_write(self, preview: PreviewSource) -> None:
        now = time.monotonic()
        if now - self._last < PREVIEW_INTERVAL:
            return
        self._last = now
        try:
            image = preview()
            image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
            write_atomically(self._path, _jpeg(image))
            self._table.preview_written()
        except Exception:  # a preview is a nicety; it must never cost the image
            log.warning("preview failed", exc_info=True)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=70)
    return buffer.getvalue()
