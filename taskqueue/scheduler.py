"""The scheduler: turns the worker's messages into task state, and keeps the engine fed.

It is the only code that moves tasks between waiting, running and their end states on the worker's behalf.
The engine is handed the next task the moment it reports the previous one rendered: no polling.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from taskqueue.forecast import MEGAPIXEL, Forecaster, Observation, Workload
from taskqueue.images import ImageFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.store import TaskStore
from taskqueue.tasks import Task, TaskStatus
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
    """Counters bumped on task state changes, which waiters can block on instead of polling.

    `version` counts every change. `others_version` leaves out a normal task joining the end of the queue,
    which changes nothing known about any other task: what TaskService.status memoizes is keyed on it, so that
    polling stays cheap while clients keep submitting.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.version = 0
        self.others_version = 0

    def changed(self, *, joined_end: bool = False) -> None:
        with self._condition:
            self.version += 1
            if not joined_end:
                self.others_version += 1
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
        metrics: QueueMetrics | None = None,
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
        self._engine_claim: Task | None = None  # the task last handed to the engine, as claimed
        self._learn_next = False
        self.info = info
        self.load_error: str | None = None
        self.changes = ChangeFeed()
        self.metrics = metrics or QueueMetrics()

    def attach(self, sink: TaskSink) -> None:
        self._sink = sink

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def engine_task(self) -> str | None:
        """The task holding the engine (None while it is idle or loading)."""
        return self._engine_task

    @property
    def engine_claim(self) -> Task | None:
        """The task holding the engine as it was claimed (its parameters never change), without a store read."""
        task = self._engine_claim
        return task if task is not None and task.id == self._engine_task else None

    def stopping(self) -> None:
        with self._lock:
            self._stopping = True

    def dispatch(self) -> None:
        """Give the engine the next task if it is free."""
        with self._lock:
            if not self._ready or self._engine_task is not None or self._stopping or self._sink is None:
                return
            if not self._may_start_next():
                return
            task = self._store.claim_next()
            if task is None:
                return
            self._engine_task, self._engine_claim = task.id, task
            image_path = str(self._images.path(task.id, task.output.format))
            # Logged before the worker has it, so that this line comes before the task's next one.
            log.info("task %s running (attempt %d)", task.id, task.attempts, extra={"task_id": task.id})
            self._sink.submit(Submit(task.id, task.params, task.output, image_path))
        self.changes.changed()

    def _may_start_next(self) -> bool:
        """A task re-run after a worker death runs alone in the worker: it starts once the images before it are
        stored, and the next task once its own is. If the worker dies again, the blame is then its alone.
        Beside other tasks, each death counted an attempt against them all, and a task that was being encoded
        during both deaths was failed for another task's fault."""
        in_worker = self._store.running()  # the engine is free here: these are being encoded
        if any(task.attempts > 1 for task in in_worker):
            return False
        upcoming, _ = self._store.listed((TaskStatus.WAITING,), 1, 0)
        return not (upcoming and upcoming[0].attempts > 0 and in_worker)

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
        with self._lock:
            learn, self._learn_next = self._learn_next, True
            self._engine_task = None  # first: the engine is free even if the store cannot record it (disk full)
        self.dispatch()  # before the bookkeeping and learning below: the engine waits for none of it
        task = self._store.get(message.task_id)
        self._store.mark_rendered(message.task_id, message.at)
        self.changes.changed()  # now, not after the learning below: status answers are memoized per change
        if task is not None:
            p = task.params
            forecast = self._forecaster.model.seconds(Workload.of(p.width, p.height, p.steps))  # before learning
            self.metrics.task_rendered(forecast, message.engine_seconds, message.step_seconds)
            log.debug(
                "task %s rendered in %.2f s (forecast %.2f s)", task.id, message.engine_seconds, forecast,
                extra={"task_id": task.id},
            )  # fmt: skip
            if learn:
                self._forecaster.record(Observation(p.pixels / MEGAPIXEL, p.steps, message.engine_seconds))

    def _on_finished(self, message: Finished) -> None:
        task = self._store.get(message.task_id)
        if task is None or not self._store.mark_done(message.task_id, message.at, message.image_bytes):
            if task is not None:  # cancelled while it was being encoded: nobody wants the image
                self._images.delete(task.id, task.output.format)
                log.debug("task %s: image discarded, cancelled meanwhile", task.id, extra={"task_id": task.id})
            self.dispatch()  # a re-run's image was the last thing in the worker: the next task may start
            return
        self._forecaster.encode.record(task.output.format.value, task.params.pixels / MEGAPIXEL, message.encode_seconds)
        self.metrics.latency_seconds.observe(max(message.at - task.submitted_at, 0.0))
        self._count("done")
        log.info("task %s done (%d bytes)", task.id, message.image_bytes, extra={"task_id": task.id})
        self.dispatch()  # see _may_start_next

    def _on_failed(self, message: Failed) -> None:
        if self._store.mark_failed(message.task_id, message.at, f"{message.kind} failed: {message.message}"):
            self._count("failed")
            log.warning("task %s failed: %s", message.task_id, message.message, extra={"task_id": message.task_id})
        if message.kind == "generation":
            with self._lock:
                self._engine_task = None
        self.dispatch()  # an encoding failure may end a re-run's turn alone in the worker

    def _on_cancelled(self, message: Cancelled) -> None:
        with self._lock:
            stopping = self._stopping
            self._engine_task = None
        if stopping:  # abandoned for shutdown, not by a client: it runs again after the restart
            if self._store.requeue(message.task_id, count_attempt=False):
                log.info("task %s waiting again: the server is stopping", message.task_id,
                         extra={"task_id": message.task_id})  # fmt: skip
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
                if self._store.requeue(task.id, count_attempt=False):
                    why = "the server is stopping" if stopping else f"it had not started: {reason}"
                    log.info("task %s waiting again: %s", task.id, why, extra={"task_id": task.id})
            elif task.attempts >= self._max_attempts:
                error = f"{reason} while running this task, {task.attempts} times; not retrying it"
                self._store.mark_failed(task.id, time.time(), error)
                self._count("failed")
                log.error("task %s failed: %s", task.id, error, extra={"task_id": task.id})
            else:
                # The death may have nothing to do with this task (memory pressure from elsewhere): run it again.
                self._store.requeue(task.id, count_attempt=True)
                self.metrics.retried.inc()
                log.warning("task %s will run again: %s", task.id, reason, extra={"task_id": task.id})
        self.changes.changed()

    def _count(self, outcome: str) -> None:
        self.metrics.task_finished(outcome)
