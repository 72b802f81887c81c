"""Housekeeping: forget finished tasks past retention and drop the oldest unfetched images beyond the storage
limits, so an unattended server cannot fill its disk. Runs on its own thread; the first sweep at start."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from core.tasks import Task, TaskStatus
from taskqueue.changes import ChangeFeed
from taskqueue.images import ImageFiles
from taskqueue.inputs import InputFiles
from taskqueue.store import TaskStore

log = logging.getLogger("taskqueue")


@dataclass(frozen=True)
class StorageLimits:
    retention_seconds: float = 24 * 3600.0  # unfetched images and finished tasks are forgotten after this
    max_stored_images: int = 1000
    max_stored_bytes: int | None = None  # unfetched images' total size; None: only the count is capped


class Housekeeper:
    def __init__(
        self,
        store: TaskStore,
        images: ImageFiles,
        changes: ChangeFeed,
        limits: StorageLimits,
        interval: float = 60.0,
        inputs: InputFiles | None = None,
    ) -> None:
        self._store = store
        self._images = images
        self._inputs = inputs
        self._changes = changes
        self._limits = limits
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # The first sweep runs at once: a server restarted after days must not wait a period to clean up.
        while True:
            try:
                self.sweep(time.time())
            except Exception:
                log.exception("housekeeping failed")
            if self._stop.wait(self._interval):
                return

    def sweep(self, now: float) -> int:
        """Forget finished tasks past retention, then drop the oldest unfetched images beyond the stored-image
        limits (count and bytes). Returns how many went."""
        if self._inputs is not None:  # ended tasks' inputs, should a path that ends tasks have left any
            for task in self._store.with_inputs():
                if task.status.is_final:
                    self._inputs.delete(task.id)
        forgotten = self._store.expire(now - self._limits.retention_seconds)
        for task in forgotten:
            if task.status is TaskStatus.DONE:
                self._images.delete(task.id, task.output.format)
            if self._inputs is not None:
                self._inputs.delete(task.id)
            log.debug("task %s forgotten: finished over the retention time ago", task.id, extra={"task_id": task.id})
        if forgotten:
            hours = self._limits.retention_seconds / 3600
            log.info("forgot %d task(s) that finished over %g h ago", len(forgotten), hours)
        dropped = self._drop_beyond_limits()
        if forgotten or dropped:
            self._changes.changed()  # status answers are memoized per version of the feed
        return len(forgotten) + dropped

    def enforce_storage(self) -> int:
        """Called as each image is stored: the oldest unfetched images go at once when the limits are passed,
        not at the next sweep (a busy server could otherwise hold thousands beyond them for a minute)."""
        count, total = self._store.stored_images()
        total += self._inputs.stored_bytes() if self._inputs is not None else 0
        bytes_limit = self._limits.max_stored_bytes
        if count <= self._limits.max_stored_images and (bytes_limit is None or total <= bytes_limit):
            return 0
        dropped = self._drop_beyond_limits()
        if dropped:
            self._changes.changed()
        return dropped

    def _drop_beyond_limits(self) -> int:
        dropped = 0
        for task, reason in self._over_storage_limits(self._store.unfetched_images()):
            if self._store.drop_image(task.id, reason):
                self._images.delete(task.id, task.output.format)
                dropped += 1
                log.info("task %s: image deleted unfetched, %s", task.id, reason, extra={"task_id": task.id})
        return dropped

    def _over_storage_limits(self, unfetched: list[Task]) -> list[tuple[Task, str]]:
        """The oldest of `unfetched` (oldest first) that must go for the rest to fit the limits, with why."""
        count_limit, bytes_limit = self._limits.max_stored_images, self._limits.max_stored_bytes
        count, total = len(unfetched), sum(task.image_bytes or 0 for task in unfetched)
        total += self._inputs.stored_bytes() if self._inputs is not None else 0  # waiting tasks' inputs count too
        excess = []
        for task in unfetched:
            if count > count_limit:
                reason = f"over the limit of {count_limit} stored images"
            elif bytes_limit is not None and total > bytes_limit:
                reason = f"over the limit of {bytes_limit / 1e6:g} MB of stored images"
            else:
                break
            excess.append((task, reason))
            count, total = count - 1, total - (task.image_bytes or 0)
        return excess
