"""The scheduler: turns the worker's messages into task state, and keeps the engine fed.

It is the only code that moves tasks between waiting, running and their end states on the worker's behalf.
The engine is handed the next task the moment it reports the previous one rendered: no polling. What the
engine holds is published as one immutable `EngineState`, which the rest of the queue reads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Protocol

from core.engines import EngineInfo
from core.tasks import Task, TaskStatus
from taskqueue.changes import ChangeFeed
from taskqueue.forecast import Forecaster, Observation, Workload
from taskqueue.images import ImageFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.store import TaskStore
from worker.protocol import Cancelled, Failed, Finished, FromWorker, LoadFailed, Log, Ready, Rendered, Started, Submit
from worker.supervisor import describe_exit

log = logging.getLogger("taskqueue")
worker_log = logging.getLogger("worker")


class TaskSink(Protocol):
    def submit(self, message: Submit) -> bool: ...


@dataclass(frozen=True)
class EngineState:
    """What the engine is and holds, as of the scheduler's last transition."""

    info: EngineInfo
    ready: bool = False
    load_error: str | None = None
    task: Task | None = None  # the task holding the engine, as it was claimed (its parameters never change)


class Scheduler:
    def __init__(
        self,
        store: TaskStore,
        images: ImageFiles,
        forecaster: Forecaster,
        info: EngineInfo,
        changes: ChangeFeed,
        metrics: QueueMetrics,
        max_attempts: int = 2,
    ) -> None:
        self._store = store
        self._images = images
        self._forecaster = forecaster
        self._changes = changes
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._lock = threading.RLock()
        self._sink: TaskSink | None = None
        self._stopping = False
        self._learn_next = False
        self._state = EngineState(info)

    def attach(self, sink: TaskSink) -> None:
        self._sink = sink

    @property
    def state(self) -> EngineState:
        return self._state

    def _publish(self, **changes: object) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    # -- feeding the engine ------------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Give the engine the next task if it is free."""
        with self._lock:
            state = self._state
            if not state.ready or state.task is not None or self._stopping or self._sink is None:
                return
            if not self._may_start_next():
                return
            task = self._store.claim_next()
            if task is None:
                return
            self._state = replace(state, task=task)
            image_path = str(self._images.path(task.id, task.output.format))
            # Logged before the worker has it, so that this line comes before the task's next one.
            log.info("task %s running (attempt %d)", task.id, task.attempts, extra={"task_id": task.id})
            self._sink.submit(Submit(task.id, task.params, task.output, image_path))
        self._changes.changed()

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

    def stop_dispatching(self) -> None:
        """The server is stopping: hand out nothing more; a task the engine abandons now runs after a restart."""
        with self._lock:
            self._stopping = True

    def requeue_running(self) -> None:
        """At shutdown, after the worker has gone: what is still running goes back to waiting, uncharged."""
        for task in self._store.running():
            if self._store.requeue(task.id, count_attempt=False):
                log.info("task %s waiting again: the server is stopping", task.id, extra={"task_id": task.id})
        self._publish(ready=False, task=None)
        self._changes.changed()

    # -- the worker's messages ---------------------------------------------------------------------------

    def on_message(self, message: FromWorker) -> None:
        match message:
            case Log():
                worker_log.log(message.level, "%s", message.message, extra={"task_id": message.task_id})
                return
            case Ready():
                self._on_ready(message)
            case LoadFailed():
                log.error("the engine could not be loaded: %s", message.message)
                self._publish(load_error=message.message)
            case Started():
                self._store.mark_started(message.task_id, message.at)
            case Rendered():
                self._on_rendered(message)
            case Finished():
                self._on_finished(message)
            case Failed():
                self._on_failed(message)
            case Cancelled():
                self._on_cancelled(message)
        self._changes.changed()

    def _on_ready(self, message: Ready) -> None:
        log.info("engine ready: %s (loaded in %.1f s)", message.info.label, message.load_seconds)
        with self._lock:
            self._state = EngineState(message.info, ready=True)
            self._learn_next = False  # the first task after loading pays for warm-up; do not learn from it
        self.dispatch()

    def _on_rendered(self, message: Rendered) -> None:
        with self._lock:
            learn, self._learn_next = self._learn_next, True
            self._state = replace(self._state, task=None)  # first: the engine is free even if the store is not
        self.dispatch()  # before the bookkeeping and learning below: the engine waits for none of it
        task = self._store.get(message.task_id)
        self._store.mark_rendered(message.task_id, message.at)
        self._changes.changed()  # now, not after the learning below: status answers are memoized per change
        if task is None:
            return
        p = task.params
        forecast = self._forecaster.model.seconds(Workload.of(p.width, p.height, p.steps))  # before learning
        self._metrics.task_rendered(forecast, message.engine_seconds, message.step_seconds)
        log.debug(
            "task %s rendered in %.2f s (forecast %.2f s)", task.id, message.engine_seconds, forecast,
            extra={"task_id": task.id},
        )  # fmt: skip
        if learn:
            self._forecaster.record(Observation(p.megapixels, p.steps, message.engine_seconds))

    def _on_finished(self, message: Finished) -> None:
        task = self._store.get(message.task_id)
        if task is None or not self._store.mark_done(message.task_id, message.at, message.image_bytes):
            if task is not None:  # cancelled while it was being encoded: nobody wants the image
                self._images.delete(task.id, task.output.format)
                log.debug("task %s: image discarded, cancelled meanwhile", task.id, extra={"task_id": task.id})
            self.dispatch()  # a re-run's image was the last thing in the worker: the next task may start
            return
        self._forecaster.encode.record(task.output.format.value, task.params.megapixels, message.encode_seconds)
        self._metrics.latency_seconds.observe(max(message.at - task.submitted_at, 0.0))
        self._metrics.task_finished("done")
        log.info("task %s done (%d bytes)", task.id, message.image_bytes, extra={"task_id": task.id})
        self.dispatch()  # see _may_start_next

    def _on_failed(self, message: Failed) -> None:
        if self._store.mark_failed(message.task_id, message.at, f"{message.kind} failed: {message.message}"):
            self._metrics.task_finished("failed")
            log.warning("task %s failed: %s", message.task_id, message.message, extra={"task_id": message.task_id})
        if message.kind == "generation":
            self._publish(task=None)
        self.dispatch()  # an encoding failure may end a re-run's turn alone in the worker

    def _on_cancelled(self, message: Cancelled) -> None:
        with self._lock:
            stopping = self._stopping
            self._state = replace(self._state, task=None)
        if stopping:  # abandoned for shutdown, not by a client: it runs again after the restart
            if self._store.requeue(message.task_id, count_attempt=False):
                log.info("task %s waiting again: the server is stopping", message.task_id,
                         extra={"task_id": message.task_id})  # fmt: skip
        else:
            log.info("task %s stopped mid-generation", message.task_id, extra={"task_id": message.task_id})
        self.dispatch()

    def on_worker_exit(self, exitcode: int | None, was_ready: bool) -> None:
        with self._lock:
            self._state = replace(self._state, ready=False, task=None)
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
                self._metrics.task_finished("failed")
                log.error("task %s failed: %s", task.id, error, extra={"task_id": task.id})
            else:
                # The death may have nothing to do with this task (memory pressure from elsewhere): run it again.
                self._store.requeue(task.id, count_attempt=True)
                self._metrics.retried.inc()
                log.warning("task %s will run again: %s", task.id, reason, extra={"task_id": task.id})
        self._changes.changed()
