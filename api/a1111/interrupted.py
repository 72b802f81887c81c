"""Images stopped by A1111's /interrupt or /skip, as they stood, until their blocking call answers with them."""

from __future__ import annotations

import threading
from collections import OrderedDict

from flask import current_app

EXTENSION = "mflux_server.a1111_interrupted"
KEPT = 64  # a blocking call picks its image up at once; these are only the ones whose call has gone


class Interrupted:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._images: OrderedDict[str, bytes] = OrderedDict()

    def keep(self, task_id: str, png: bytes) -> None:
        with self._lock:
            self._images[task_id] = png
            while len(self._images) > KEPT:
                self._images.popitem(last=False)

    def pop(self, task_id: str) -> bytes | None:
        with self._lock:
            return self._images.pop(task_id, None)


def interrupted() -> Interrupted:
    return current_app.extensions.setdefault(EXTENSION, Interrupted())
