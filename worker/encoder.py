"""Encodes and stores finished images on a side thread, in order, so the engine starts the next task at once."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from PIL import Image

from core.files import write_atomically
from worker.compositing import join
from worker.encoding import encode_image
from worker.engines.base import LoadedModel
from worker.outbox import Outbox
from worker.protocol import Failed, Finished, Submit

log = logging.getLogger(__name__)

Job = tuple[Submit, Image.Image, LoadedModel]


class Encoder:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="encoder", daemon=True)
        self._thread.start()

    def submit(self, task: Submit, image: Image.Image, model: LoadedModel) -> None:
        self._jobs.put((task, image, model))

    def close(self) -> None:
        """Finish what is queued, then stop."""
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._store(*job)

    def _store(self, task: Submit, image: Image.Image, model: LoadedModel) -> None:
        began = time.monotonic()
        try:
            if task.params.composite is not None:
                image = join(image, task.params.composite, task.inputs_dir)
            data = encode_image(image, task.output, model.image_metadata(task.params))
        except Exception as error:
            log.exception("encoding failed", extra={"task_id": task.task_id})
            self._outbox.send(Failed(task.task_id, time.time(), "encoding", f"{type(error).__name__}: {error}"))
            return
        try:
            write_atomically(Path(task.image_path), data)
        except OSError as error:  # disk full, data directory gone or read-only: fail this task, keep serving
            message = f"could not store the image: {error}"
            log.error("%s", message, extra={"task_id": task.task_id})
            self._outbox.send(Failed(task.task_id, time.time(), "encoding", message))
            return
        self._outbox.send(Finished(task.task_id, time.time(), len(data), time.monotonic() - began))
