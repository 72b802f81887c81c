"""The scheduler: turns the worker's messages into task state, and keeps the engine fed.

It is the only code that moves tasks between waiting, running and their end states on the worker's behalf. The
engine is handed its next task the moment it reports the previous one rendered (no polling), chosen by the
planner's rule (taskqueue/planner.py: priority, then first come, with bounded grouping by loaded variant).
What the worker is and holds is published as one immutable `WorkerState`, which the rest of the queue reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from core.models import Variant
from core.tasks import Task
from taskqueue.changes import ChangeFeed
from taskqueue.forecast import Forecaster, Timing
from taskqueue.images import ImageFiles
from taskqueue.inputs import InputFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.planner import PROMPT_MEMORY, Fairness, Queued, pick
from taskqueue.store import TaskStore, prompt_key
from worker.protocol import (
    Cancelled,
    EngineFailed,
    Failed,
    Finished,
    FromWorker,
    Loaded,
    LoadFailed,
    Loading,
    Log,
    Preload,
    Ready,
    Rendered,
    Started,
    Submit,
    ToWorker,
)
from worker.supervisor import describe_exit

log = logging.getLogger("taskqueue")
worker_log = logging.getLogger("worker")

LOAD_DEATHS_BEFORE_FAILING = 2  # a variant whose load killed the worker this often will not load
DEFAULT_FAIRNESS = Fairness()


class WorkerLink(Protocol):
    def send(self, message: ToWorker) -> bool: ...


@dataclass(frozen=True)
class WorkerState:
    """What a worker is and holds, as of the scheduler's last transition."""

    name: str
    ready: bool = False  # its engine works; variants load on demand
    warm: tuple[str, ...] = ()  # loaded variants (keys), the least recently used first
    loading: tuple[str, float] | None = None  # the variant it is loading, since when (Unix time)
    task: Task | None = None  # the task holding its engine, as it was claimed
    engine_error: str | None = None  # its engine cannot work here
    prompts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # warm variant → prompts it cached
    fresh: frozenset[str] = frozenset()  # warm variants not given a task since their load: they warm up first
    task_first: bool = False  # the task it holds is its variant's first image since the load
    task_cached: bool = False  # ... and its prompt is in the variant's cache

    def given(self, task: Task) -> WorkerState:
        """This worker after taking `task`: its variant has a task since its load and caches its prompt."""
        key, prompt = task.variant.key, prompt_key(task.params)
        warm = key in self.warm or (self.loading is not None and self.loading[0] == key)
        first = not warm or key in self.fresh
        cached = warm and prompt in self.prompts.get(key, ())
        recent = tuple(k for k in self.prompts.get(key, ()) if k != prompt)
        prompts = {**self.prompts, key: (*recent, prompt)[-PROMPT_MEMORY:]}
        return replace(self, task=task, prompts=prompts, fresh=self.fresh - {key}, task_first=first,
                       task_cached=cached)  # fmt: skip

    def gone(self) -> WorkerState:
        """This worker after its process ended: nothing held, nothing loaded."""
        return replace(self, ready=False, task=None, loading=None, warm=(), prompts={}, fresh=frozenset())

    def loaded(self, variant: str, evicted: tuple[str, ...]) -> WorkerState:
        """This worker after loading `variant` (for its task, or ahead of one)."""
        warm = tuple(key for key in self.warm if key not in evicted and key != variant)
        prompts = {key: keys for key, keys in self.prompts.items() if key in warm}
        fresh = self.fresh - set(evicted)
        if self.task is not None and self.task.variant.key == variant:  # loaded for the task it holds
            prompts[variant] = (prompt_key(self.task.params),)
        else:
            prompts[variant], fresh = (), fresh | {variant}
        return replace(self, warm=(*warm, variant), loading=None, prompts=prompts, fresh=fresh)


class Scheduler:
    def __init__(
        self,
        store: TaskStore,
        images: ImageFiles,
        inputs: InputFiles,
        forecaster: Forecaster,
        changes: ChangeFeed,
        metrics: QueueMetrics,
        default_variant: Variant,
        *,
        fairness: Fairness = DEFAULT_FAIRNESS,
        max_attempts: int = 2,
        max_loaded: int = 1,
    ) -> None:
        self._store = store
        self._images = images
        self._inputs = inputs
        self._forecaster = forecaster
        self._changes = changes
        self._metrics = metrics
        self._fairness = fairness
        self._max_attempts = max_attempts
        self.max_loaded = max_loaded
        self._lock = threading.RLock()
        self._link: WorkerLink | None = None
        self._stopping = False
        self._state = WorkerState("local")
        self._default = default_variant
        self._variants: dict[str, Variant] = {default_variant.key: default_variant}
        self._failed_loads: dict[str, str] = {}
        self._load_deaths: dict[str, int] = {}
        self.ever_loaded: set[str] = set()  # models loaded since the start: their weights are here now

    def attach(self, link: WorkerLink) -> None:
        self._link = link

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def default_variant(self) -> Variant:
        return self._default

    def load_error(self, variant: str) -> str | None:
        """Why this variant cannot be loaded, if it could not be."""
        return self._failed_loads.get(variant)

    def load_errors(self) -> dict[str, str]:
        return dict(self._failed_loads)

    def _publish(self, **changes: object) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    # -- choosing what runs ------------------------------------------------------------------------------

    def make_default(self, variant: Variant) -> None:
        """New tasks that name no model run this one; it is loaded now unless it is already."""
        with self._lock:
            self._default = variant
            self._variants[variant.key] = variant
            self._failed_loads.pop(variant.key, None)  # asked for again: try again
            self._load_deaths.pop(variant.key, None)
        self.preload(variant)
        self._changes.changed()

    def preload(self, variant: Variant) -> None:
        with self._lock:
            state = self._state
            if not state.ready or self._link is None or variant.key in state.warm:
                return
            if state.loading is not None and state.loading[0] == variant.key:
                return
            self._variants[variant.key] = variant
            self._link.send(Preload(variant))

    def dispatch(self) -> None:
        """Give the engine its next task if it is free."""
        with self._lock:
            state = self._state
            if not state.ready or state.task is not None or self._stopping or self._link is None:
                return
            warm = state.warm + ((state.loading[0],) if state.loading else ())
            queue = self._store.queue()
            try:
                choice = pick(queue, warm, self._fairness, self._seconds)
            finally:
                queue.close()  # it reads lazily: let go of the read before writing the claim
            if choice is None or not self._may_start(choice.task):
                return
            overtaken_seconds = self._seconds(choice.task) if choice.overtakes else 0.0
            task = self._store.claim(choice.task.id, [t.id for t in choice.overtakes], overtaken_seconds)
            if task is None:
                return
            self._state = state.given(task)
            self._variants[task.variant.key] = task.variant
            # Logged before the worker has it, so that this line comes before the task's next one.
            log.info(
                "task %s running on %s (attempt %d)", task.id, task.variant.key, task.attempts,
                extra={"task_id": task.id},
            )  # fmt: skip
            image_path = str(self._images.path(task.id, task.output.format))
            inputs = str(self._inputs.folder(task.id))
            self._link.send(Submit(task.id, task.variant, task.params, task.output, image_path, inputs))
        self._changes.changed()

    def _seconds(self, task: Queued) -> float:
        return self._forecaster.task_seconds(task.cost_key, task.megapixels, task.steps, False, False)

    def _may_start(self, upcoming: Queued) -> bool:
        """A task re-run after a worker death runs alone in the worker: it starts once the images before it are
        stored, and the next task once its own is. If the worker dies again, the blame is then its alone.
        Beside other tasks, each death counted an attempt against them all, and a task that was being encoded
        during both deaths was failed for another task's fault."""
        in_worker = self._store.running()  # the engine is free here: these are being encoded
        if any(task.attempts > 1 for task in in_worker):
            return False
        return not (upcoming.attempts > 0 and in_worker)

    def stop_dispatching(self) -> None:
        """The server is stopping: hand out nothing more; a task the engine abandons now runs after a restart."""
        with self._lock:
            self._stopping = True

    def requeue_running(self) -> None:
        """At shutdown, after the worker has gone: what is still running goes back to waiting, uncharged."""
        for task in self._store.running():
            if self._store.requeue(task.id, count_attempt=False):
                log.info("task %s waiting again: the server is stopping", task.id, extra={"task_id": task.id})
        with self._lock:
            self._state = self._state.gone()
        self._changes.changed()

    # -- the worker's messages ---------------------------------------------------------------------------

    def on_message(self, message: FromWorker) -> None:
        match message:
            case Log():
                worker_log.log(message.level, "%s", message.message, extra={"task_id": message.task_id})
                return
            case Ready():
                self._on_ready(message)
            case EngineFailed():
                log.error("the engine cannot work here: %s", message.message)
                self._publish(engine_error=message.message)
            case Loading():
                log.info("loading %s", message.variant)
                self._publish(loading=(message.variant, message.at))
            case Loaded():
                self._on_loaded(message)
            case LoadFailed():
                self._load_failed(message.variant, message.message)
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
        log.info("worker ready: %s engine", message.engine)
        with self._lock:
            self._state = WorkerState(self._state.name, ready=True)
            default = self._default
        if default.key not in self._failed_loads:
            self.preload(default)
        self.dispatch()

    def _on_loaded(self, message: Loaded) -> None:
        variant = self._variants.get(message.variant)
        log.info("loaded %s in %.1f s", message.variant, message.seconds)
        with self._lock:
            self._state = self._state.loaded(message.variant, message.evicted)
            self._load_deaths.pop(message.variant, None)
        if variant is not None:
            self.ever_loaded.add(variant.model)
            self._forecaster.record_load(variant.cost_key, message.seconds)
        self.dispatch()

    def _load_failed(self, variant: str, message: str) -> None:
        log.error("%s cannot be loaded: %s", variant, message)
        with self._lock:
            self._failed_loads[variant] = message
            state = self._state
            engine_task = state.task if state.task is not None and state.task.variant.key == variant else None
            self._state = replace(state, loading=None, task=None if engine_task else state.task)
        error = f"load failed: {message}"
        failed = self._store.fail_waiting(variant, error)
        if engine_task is not None and self._store.mark_failed(engine_task.id, time.time(), error):
            failed.append(engine_task.id)
        for task_id in failed:
            self._inputs.delete(task_id)
            self._metrics.task_finished("failed")
            log.warning("task %s failed: %s cannot be loaded", task_id, variant, extra={"task_id": task_id})
        self.dispatch()  # the other variants' tasks run

    def _on_rendered(self, message: Rendered) -> None:
        with self._lock:
            self._state = replace(self._state, task=None)  # first: the engine is free even if the store is not
        self.dispatch()  # before the bookkeeping and learning below: the engine waits for none of it
        task = self._store.get(message.task_id)
        self._store.mark_rendered(message.task_id, message.at)
        self._changes.changed()  # now, not after the learning below: status answers are memoized per change
        if task is None:
            return
        p = task.params
        key = task.variant.cost_key
        cached = bool(message.prompt_cached)
        forecast = self._forecaster.task_seconds(key, p.work_megapixels, p.steps_run, cached, message.first_after_load)
        self._metrics.task_rendered(forecast, message.engine_seconds, message.step_seconds)
        log.debug(
            "task %s rendered in %.2f s (forecast %.2f s)", task.id, message.engine_seconds, forecast,
            extra={"task_id": task.id},
        )  # fmt: skip
        if message.loop_seconds and message.steps_run and message.before_loop_seconds is not None:
            self._forecaster.record(Timing(
                key, p.work_megapixels, message.steps_run, message.before_loop_seconds, message.loop_seconds,
                message.after_loop_seconds or 0.0, message.prompt_cached, message.first_after_load,
            ))  # fmt: skip

    def _on_finished(self, message: Finished) -> None:
        self._inputs.delete(message.task_id)  # the worker is done with them, whatever became of the task
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
        self.dispatch()  # see _may_start

    def _on_failed(self, message: Failed) -> None:
        self._inputs.delete(message.task_id)
        if self._store.mark_failed(message.task_id, message.at, f"{message.kind} failed: {message.message}"):
            self._metrics.task_finished("failed")
            log.warning("task %s failed: %s", message.task_id, message.message, extra={"task_id": message.task_id})
        if message.kind != "encoding":
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
            self._inputs.delete(message.task_id)
            log.info("task %s stopped mid-generation", message.task_id, extra={"task_id": message.task_id})
        self.dispatch()

    def on_worker_exit(self, exitcode: int | None, was_ready: bool) -> None:
        with self._lock:
            loading = self._state.loading
            self._state = self._state.gone()
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
        if loading is not None and not stopping:
            self._died_loading(loading[0], reason)
        self._changes.changed()

    def _died_loading(self, variant: str, reason: str) -> None:
        deaths = self._load_deaths.get(variant, 0) + 1
        self._load_deaths[variant] = deaths
        if deaths >= LOAD_DEATHS_BEFORE_FAILING:
            self._load_failed(variant, f"{reason} while loading it, {deaths} times (too little memory for it?)")
