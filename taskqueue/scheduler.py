"""The scheduler: turns the worker's messages into task state, and keeps the engine fed.

It is the only code that moves tasks between waiting, running and their end states on the worker's behalf.
The engine is handed the next task the moment it reports the previous one rendered: no polling.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from taskqueue.forecast import Forecaster, Observation
from taskqueue.images import ImageFiles
from taskqueue.store import TaskStore
from worker.engines.base import EngineInfo
from worker.protocol import (
    Cancelled,
    Failed,
    Finished,
    FromWorker,
    LoadFailed,
    Log,
    Ready,
    Rendered,
    Started,
    Submit,
)
from worker.supervisor import describe_exit

log = logging.getLogger("taskqueue")
worker_log = logging.getLogger("worker")


class TaskSink(Protocol):
    def submit(self, message: Submit) -> bool: ...


class ChangeFeed:
    """A counter bumped on every task state change, which waiters can block on instead of polling."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.version = 0

    def changed(self) -> None:
        with self._condition:
            self.version += 1
            self._condition.notify_all()

    def wait(self, since: int, timeout: float) -> int:
        with self._condition:
            self._condition.wait_for(lambda: self.version != since, timeout)
            return self.version


class Scheduler:
    def __init__(
        self,
        store: TaskStore,
        images: ImageFiles,
        forecaster: Forecaster,
        info: EngineInfo,
        max_attempts: int = 2,
    ) -> None:
        self._store = store
        self._images = images
        self._forecaster = forecaster
        self._max_attempts = max_attempts
        self._lock = threading.RLock()
        self._sink: TaskSink | None = None
        self._ready = False
        self._stopping = False
        self._engine_task: str | None = None
        self._learn_next = False
        self.info = info
        self.load_error: str | None = None
        self.changes = ChangeFeed()
        self.outcomes: dict[str, int] = {}

    def attach(self, sink: TaskSink) -> None:
        self._sink = sink

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def engine_task(self) -> str | None:
        """The task holding the engine (None while it is idle or loading)."""
        return self._engine_task

    def stopping(self) -> None:
        with self._lock:
            self._stopping = True

    def dispatch(self) -> None:
        """Give the engine the next task if it is free."""
        with self._lock:
            if not self._ready or self._engine_task is not None or self._stopping or self._sink is None:
                return
            task = self._store.claim_next()
            if task is None:
                return
            self._engine_task = task.id
            image_path = str(self._images.path(task.id, task.output.format))
            self._sink.submit(Submit(task.id, task.params, task.output, image_path))
        log.info("task %s running (attempt %d)", task.id, task.attempts, extra={"task_id": task.id})
        self.changes.changed()

    # -- the worker's messages ---------------------------------------------------------------------------

    def on_message(self, message: FromWorker) -> None:
        if isinstance(message, Log):
            worker_log.log(message.level, "%s", message.message, extra={"task_id": message.task_id})
            return
        handler = getattr(self, f"_on_{type(message).__name__.lower()}")
        handler(message)
        self.changes.changed()

    def _on_ready(self, message: Ready) -> None:
        log.info("engine ready: %s (loaded in %.1f s)", message.info.label, message.load_seconds)
        with self._lock:
            self.info = message.info
            self.load_error = None
            self._ready = True
            self._learn_next = False  # the first task after loading pays for warm-up; do not learn from it
        self.dispatch()

    def _on_loadfailed(self, message: LoadFailed) -> None:
        log.error("the engine could not be loaded: %s", message.message)
        self.load_error = message.message

    def _on_started(self, message: Started) -> None:
        self._store.mark_started(message.task_id, message.at)

    def _on_rendered(self, message: Rendered) -> None:
        task = self._store.get(message.task_id)
        self._store.mark_rendered(message.task_id, message.at)
        with self._lock:
            learn, self._learn_next = self._learn_next, True
            self._engine_task = None
        if task is not None and learn:
            self._forecaster.record(
                Observation(task.params.pixels / 1048576, task.params.steps, message.engine_seconds)
            )
        self.dispatch()

    def _on_finished(self, message: Finished) -> None:
        task = self._store.get(message.task_id)
        if task is None or not self._store.mark_done(message.task_id, message.at, message.image_bytes):
            if task is not None:  # cancelled while it was being encoded: nobody wants the image
                self._images.delete(task.id, task.output.format)
            return
        self._forecaster.encode.record(task.output.format.value, task.params.pixels / 1048576, message.encode_seconds)
        self._count("done")
        log.info("task %s done (%d bytes)", task.id, message.image_bytes, extra={"task_id": task.id})

    def _on_failed(self, message: Failed) -> None:
        if self._store.mark_failed(message.task_id, message.at, f"{message.kind} failed: {message.message}"):
            self._count("failed")
            log.warning("task %s failed: %s", message.task_id, message.message, extra={"task_id": message.task_id})
        if message.kind == "generation":
            with self._lock:
                self._engine_task = None
            self.dispatch()

    def _on_cancelled(self, message: Cancelled) -> None:
        with self._lock:
            stopping = self._stopping
            self._engine_task = None
        if stopping:  # abandoned for shutdown, not by a client: it runs again after the restart
            self._store.requeue(message.task_id, count_attempt=False)
        else:
            log.info("task %s stopped mid-generation", message.task_id, extra={"task_id": message.task_id})
        self.dispatch()

    def on_worker_exit(self, exitcode: int | None, was_ready: bool) -> None:
        with self._lock:
            self._ready = False
            self._engine_task = None
            stopping = self._stopping
        reason = describe_exit(exitcode)
        for task in self._store.running():
            if stopping or task.started_at is None:
                self._store.requeue(task.id, count_attempt=False)
            elif task.attempts >= self._max_attempts:
                error = f"{reason} while running this task, {task.attempts} times; not retrying it"
                self._store.mark_failed(task.id, time.time(), error)
                self._count("failed")
                log.error("task %s failed: %s", task.id, error, extra={"task_id": task.id})
            else:
                # The death may have nothing to do with this task (memory pressure from elsewhere): run it again.
                self._store.requeue(task.id, count_attempt=True)
                log.warning("task %s will run again: %s", task.id, reason, extra={"task_id": task.id})
        self.changes.changed()

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
