"""The scheduler: turns the workers' messages into task state, and keeps every worker fed.

It is the only code that moves tasks between waiting, running and their end states on the workers' behalf. A
worker is handed its next task the moment it reports the previous one rendered (no polling), chosen by the
planner's rule (taskqueue/planner.py: priority, then first come, with bounded grouping by loaded variant). With
several workers free at once, the most senior task goes first, to a worker that has its model warm, else to
the one that will finish it soonest.

A worker is anything behind a `WorkerLink` (where messages go) and a `LiveSource` (its progress): the local
worker process (worker/supervisor.py, the shared-memory status table) and workers on other machines
(taskqueue/remote_workers.py, over Redis) are the same to it. What each worker is and holds is published as one
immutable `WorkerState`, which the rest of the queue reads.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from core.models import Variant, model_of
from core.progress import LiveProgress
from core.tasks import Task, TaskStatus
from taskqueue.changes import ChangeFeed
from taskqueue.forecast import LOCAL, Forecaster, Timing
from taskqueue.images import ImageFiles
from taskqueue.inputs import InputFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.planner import PROMPT_MEMORY, Fairness, Queued, pick, preference
from taskqueue.store import TaskStore, prompt_key
from worker.protocol import (
    Cancel,
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


class LiveSource(Protocol):
    def snapshot(self) -> LiveProgress | None: ...


class NoProgress:
    """A worker whose progress is not known (yet)."""

    def snapshot(self) -> LiveProgress | None:
        return None


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
    remote: bool = False  # on another machine (through Redis)
    host: str = ""
    engine: str = ""
    models: frozenset[str] | None = None  # the models it can run; None: every model the server offers
    since: float = 0.0  # when it joined (Unix time)
    done: int = 0  # images it rendered since it joined
    last_seen: float = 0.0  # its last message or heartbeat (Unix time)
    busy_since: float = 0.0  # when it was given the task it holds
    stopping_since: float | None = None  # when it was told to stop that task (the watchdog checks it does)

    @property
    def available(self) -> bool:
        return self.ready and self.engine_error is None

    @property
    def busy(self) -> bool:
        return self.task is not None

    def can_run(self, model: str) -> bool:
        return self.models is None or model in self.models

    def given(self, task: Task) -> WorkerState:
        """This worker after taking `task`: its variant has a task since its load and caches its prompt."""
        key, prompt = task.variant.key, prompt_key(task.params)
        warm = key in self.warm or (self.loading is not None and self.loading[0] == key)
        first = not warm or key in self.fresh
        cached = warm and prompt in self.prompts.get(key, ())
        recent = tuple(k for k in self.prompts.get(key, ()) if k != prompt)
        prompts = {**self.prompts, key: (*recent, prompt)[-PROMPT_MEMORY:]}
        return replace(self, task=task, prompts=prompts, fresh=self.fresh - {key}, task_first=first,
                       task_cached=cached, busy_since=time.time(), stopping_since=None)  # fmt: skip

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

    @property
    def warm_or_loading(self) -> tuple[str, ...]:
        return self.warm + ((self.loading[0],) if self.loading else ())


@dataclass
class _Worker:
    link: WorkerLink
    live: LiveSource
    state: WorkerState


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
        self._workers: dict[str, _Worker] = {}
        self._stopping = False
        self._default = default_variant
        self._variants: dict[str, Variant] = {default_variant.key: default_variant}
        self._failed_loads: dict[str, dict[str, str]] = {}  # worker → variant → why it could not be loaded
        self._load_deaths: dict[tuple[str, str], int] = {}
        self.ever_loaded: set[str] = set()  # models loaded since the start: their weights are here now
        self.on_image_stored: Callable[[], object] = lambda: None  # the storage limits, enforced as images come
        self._deferred: collections.deque[tuple[FromWorker, str]] = collections.deque()
        self._deferred_lock = threading.Lock()
        self.storage_error: str | None = None  # why the store cannot be written now (health says so)

    # -- workers -----------------------------------------------------------------------------------------

    def attach(
        self,
        link: WorkerLink,
        name: str = LOCAL,
        live: LiveSource | None = None,
        *,
        remote: bool = False,
        host: str = "",
        models: frozenset[str] | None = None,
    ) -> None:
        """A worker joins (not ready until it says `Ready`); one of the same name is replaced."""
        with self._lock:
            state = WorkerState(name, remote=remote, host=host, models=models, since=time.time(),
                                last_seen=time.time())  # fmt: skip
            self._workers[name] = _Worker(link, live or NoProgress(), state)

    def detach(self, name: str, reason: str) -> None:
        """A worker is gone for good (lost, or left): its task runs again elsewhere, as after a crash."""
        with self._lock:
            worker = self._workers.pop(name, None)
        if worker is not None:
            log.warning("worker %s is gone: %s", name, reason)
        self._requeue_after_death(name, reason, loading=worker.state.loading if worker is not None else None)
        self._changes.changed()
        self.dispatch()

    def workers(self) -> list[WorkerState]:
        with self._lock:
            return [worker.state for worker in self._workers.values()]

    def worker(self, name: str) -> WorkerState | None:
        worker = self._workers.get(name)
        return worker.state if worker is not None else None

    def live(self, name: str) -> LiveProgress | None:
        worker = self._workers.get(name)
        return worker.live.snapshot() if worker is not None else None

    def preview(self, name: str, task_id: str) -> bytes | None:
        """The latest preview of a task running on a worker whose progress source keeps previews (remote ones)."""
        worker = self._workers.get(name)
        source = getattr(worker.live, "preview", None) if worker is not None else None
        return source(task_id) if source is not None else None

    def holder(self, task_id: str) -> WorkerState | None:
        """The worker whose engine holds this task (loading for it or rendering it), if any."""
        for worker in list(self._workers.values()):
            if worker.state.task is not None and worker.state.task.id == task_id:
                return worker.state
        return None

    @property
    def state(self) -> WorkerState:
        """The local worker's state (the first worker's, without a local one)."""
        with self._lock:
            worker = self._workers.get(LOCAL) or next(iter(self._workers.values()), None)
            return worker.state if worker is not None else WorkerState(LOCAL)

    @property
    def default_variant(self) -> Variant:
        return self._default

    def load_error(self, variant: str) -> str | None:
        """Why this variant cannot be loaded, if no worker that might could."""
        with self._lock:
            capable = [w for w in self._workers.values() if w.state.can_run(model_of(variant))]
            errors = [self._failed_loads.get(w.state.name, {}).get(variant) for w in capable]
        if capable and all(errors):
            return errors[0]
        return None

    def load_errors(self) -> dict[str, str]:
        """Variant → why it could not be loaded (on the workers that tried)."""
        found: dict[str, str] = {}
        for failures in list(self._failed_loads.values()):
            found.update(failures)
        return {variant: error for variant, error in found.items() if self.load_error(variant)}

    def _update(self, name: str, **changes: object) -> None:
        with self._lock:
            worker = self._workers.get(name)
            if worker is not None:
                worker.state = replace(worker.state, **changes)

    # -- choosing what runs ------------------------------------------------------------------------------

    def make_default(self, variant: Variant) -> None:
        """New tasks that name no model run this one; it is loaded now unless it is already."""
        with self._lock:
            self._default = variant
            self._variants[variant.key] = variant
            for failures in self._failed_loads.values():
                failures.pop(variant.key, None)  # asked for again: try again
            self._load_deaths = {pair: n for pair, n in self._load_deaths.items() if pair[1] != variant.key}
        self.preload(variant)
        self._changes.changed()

    def preload(self, variant: Variant, only: str | None = None) -> None:
        """Load this variant ahead of its tasks on every worker that can run it and is idle (or on `only`)."""
        with self._lock:
            self._variants[variant.key] = variant
            for name, worker in self._workers.items():
                state = worker.state
                if only is not None and name != only:
                    continue
                if not state.available or variant.key in state.warm_or_loading or not state.can_run(variant.model):
                    continue
                if variant.key in self._failed_loads.get(name, {}):
                    continue
                worker.link.send(Preload(variant))

    def dispatch(self) -> None:
        """Give every free worker its next task: the most senior task first, to a worker that has its model warm,
        else to the one that finishes it soonest; each worker's choice is the planner's `pick` for it. If the
        store cannot record a claim (disk full), `retry_deferred` dispatches again once it can."""
        try:
            self._dispatch()
        except sqlite3.OperationalError as error:
            self.storage_failed(error, "give out the next task")

    def _dispatch(self) -> None:
        changed = False
        with self._lock:
            if self._stopping:
                return
            free = {name: w for name, w in self._workers.items() if w.state.available and not w.state.busy}
            if not free:
                return
            queue_reader = self._store.queue()
            try:
                queue = list(queue_reader)
            finally:
                queue_reader.close()  # it reads lazily: let go of the read before writing the claim
            taken: set[str] = set()
            while free and len(taken) < len(queue):
                best = None
                for name, worker in free.items():
                    state = worker.state
                    remaining = [task for task in queue if task.id not in taken]
                    choice = pick(
                        remaining, state.warm_or_loading, self._fairness, lambda t, n=name: self._seconds(t, n),
                        lambda t, s=state: self._can_run(s, t),
                    )  # fmt: skip
                    if choice is None or not self._may_start(name, choice.task):
                        continue
                    switch = choice.task.variant not in state.warm_or_loading
                    finish = self._seconds(choice.task, name) + (self._load(choice.task, name) if switch else 0.0)
                    score = preference(choice.task, switch, finish)  # the plan ranks free workers alike
                    if best is None or score < best[0]:
                        best = (score, name, choice)
                if best is None:
                    break
                _, name, choice = best
                del free[name]
                taken.add(choice.task.id)
                changed |= self._start(name, choice)
        if changed:
            self._changes.changed()

    def _start(self, name: str, choice) -> bool:
        worker = self._workers[name]
        overtaken_seconds = self._seconds(choice.task, name) if choice.overtakes else 0.0
        task = self._store.claim(choice.task.id, [t.id for t in choice.overtakes], overtaken_seconds, worker=name)
        if task is None:
            return False
        worker.state = worker.state.given(task)
        self._variants[task.variant.key] = task.variant
        # Logged before the worker has it, so that this line comes before the task's next one.
        on = "" if name == LOCAL and len(self._workers) == 1 else f" on worker {name}"
        log.info(
            "task %s running on %s%s (attempt %d)", task.id, task.variant.key, on, task.attempts,
            extra={"task_id": task.id},
        )  # fmt: skip
        image_path = str(self._images.path(task.id, task.output.format))
        inputs = str(self._inputs.folder(task.id))
        worker.link.send(Submit(task.id, task.variant, task.params, task.output, image_path, inputs))
        return True

    def _can_run(self, state: WorkerState, task: Queued) -> bool:
        return state.can_run(task.model) and task.variant not in self._failed_loads.get(state.name, {})

    def _seconds(self, task: Queued, worker: str = LOCAL) -> float:
        return self._forecaster.task_seconds(task.cost_key, task.megapixels, task.steps, False, False, worker)

    def _load(self, task: Queued, worker: str) -> float:
        return self._forecaster.load_seconds(task.cost_key, worker)

    def _may_start(self, worker: str, upcoming: Queued) -> bool:
        """A task re-run after a worker death runs alone in its worker: it starts once the images before it are
        stored, and the next task once its own is. If the worker dies again, the blame is then its alone.
        Beside other tasks, each death counted an attempt against them all, and a task that was being encoded
        during both deaths was failed for another task's fault."""
        in_worker = self._store.running(worker)  # the engine is free here: these are being encoded
        if any(task.attempts > 1 for task in in_worker):
            return False
        return not (upcoming.attempts > 0 and in_worker)

    def adopt(self, name: str, task_id: str) -> None:
        """A worker says it is rendering this task (after the server restarted): it is its, if the task still
        waits for it or runs there; else (run elsewhere meanwhile, or ended) the worker is told to stop."""
        with self._lock:
            worker = self._workers.get(name)
            if worker is None:
                return
            task = self._store.get(task_id)
            if task is not None and task.status is TaskStatus.WAITING:
                task = self._store.claim(task_id, worker=name, attempt=False)
            if task is not None and task.status is TaskStatus.RUNNING and task.worker == name:
                worker.state = worker.state.given(task)
                log.info("task %s is still running on worker %s", task_id, name, extra={"task_id": task_id})
            else:
                worker.link.send(Cancel(task_id))
        self._changes.changed()

    def cancel_running(self, task: Task) -> None:
        """Stop a running task at its next step, on whichever worker has it."""
        with self._lock:
            worker = self._workers.get(task.worker or LOCAL)
            if worker is not None and worker.state.task is not None and worker.state.task.id == task.id:
                worker.state = replace(worker.state, stopping_since=time.time())
        if worker is not None:
            worker.link.send(Cancel(task.id))

    def stop_dispatching(self) -> None:
        """The server is stopping: hand out nothing more; a task the engine abandons now runs after a restart."""
        with self._lock:
            self._stopping = True

    def requeue_running(self, keep_remote: bool = False) -> None:
        """At shutdown, after the local worker has gone: what is still running goes back to waiting, uncharged.
        `keep_remote`: tasks on workers of other machines stay theirs (they carry on; what they finish waits in
        Redis for the restart)."""
        for task in self._store.running():
            if keep_remote and task.worker not in (None, LOCAL):
                continue
            if self._store.requeue(task.id, count_attempt=False):
                log.info("task %s waiting again: the server is stopping", task.id, extra={"task_id": task.id})
        with self._lock:
            for worker in self._workers.values():
                worker.state = worker.state.gone()
        self._changes.changed()

    # -- the workers' messages ---------------------------------------------------------------------------

    def on_message(self, message: FromWorker, worker: str = LOCAL) -> None:
        """Handle a worker's message. One that cannot be recorded (the data disk full or read-only) is kept, with
        the ones after it, and handled again by `retry_deferred` until it can be: no task stays running for a
        message lost."""
        with self._deferred_lock:
            if self._deferred:  # keep their order behind the one that could not be recorded
                self._deferred.append((message, worker))
                return
        try:
            self._handle(message, worker)
        except sqlite3.OperationalError as error:
            self._defer(message, worker, error)

    def _defer(self, message: FromWorker, worker: str, error: Exception) -> None:
        with self._deferred_lock:
            self._deferred.appendleft((message, worker))
        self.storage_failed(error, f"record the worker's {type(message).__name__}")

    def storage_failed(self, error: Exception, what: str) -> None:
        """A write was refused by the store (the worker's messages, a claim, or the API's): logged the first time,
        and health says so until `retry_deferred` sees one work."""
        if self.storage_error is None:
            log.error("cannot %s: %s; retrying each second until the data directory takes writes", what, error)
        self.storage_error = str(error)

    def retry_deferred(self) -> None:
        """Handle what could not be recorded (called every second); once the store takes writes again, the queue
        moves on by itself."""
        if self.storage_error is None:
            return
        while True:
            with self._deferred_lock:
                if not self._deferred:
                    break
                message, worker = self._deferred.popleft()
            try:
                self._handle(message, worker)
            except sqlite3.OperationalError as error:
                self._defer(message, worker, error)
                return
        try:
            self._dispatch()
            self._store.check_writable()  # an empty queue writes nothing: prove that the store takes writes
        except sqlite3.OperationalError as error:
            self.storage_failed(error, "give out the next task")
            return
        log.info("the data directory takes writes again; the queue moves on")
        self.storage_error = None

    def _handle(self, message: FromWorker, worker: str) -> None:
        if self._workers.get(worker) is None:
            return  # from a worker that has been let go of (lost): whatever it says is stale
        if not self._speaks_for_its_task(message, worker):
            return
        self._update(worker, last_seen=time.time())
        match message:
            case Log():
                prefix = "" if worker == LOCAL else f"[{worker}] "
                worker_log.log(message.level, "%s%s", prefix, message.message, extra={"task_id": message.task_id})
                return
            case Ready():
                self._on_ready(message, worker)
            case EngineFailed():
                log.error("the engine cannot work on %s: %s", worker, message.message)
                self._update(worker, engine_error=message.message)
            case Loading():
                log.info("loading %s%s", message.variant, "" if worker == LOCAL else f" on worker {worker}")
                self._update(worker, loading=(message.variant, message.at))
            case Loaded():
                self._on_loaded(message, worker)
            case LoadFailed():
                self._load_failed(message.variant, message.message, worker)
            case Started():
                self._store.mark_started(message.task_id, message.at)
            case Rendered():
                self._on_rendered(message, worker)
            case Finished():
                self._on_finished(message, worker)
            case Failed():
                self._on_failed(message, worker)
            case Cancelled():
                self._on_cancelled(message, worker)
        self._changes.changed()

    def _speaks_for_its_task(self, message: FromWorker, worker: str) -> bool:
        """A message about a task must come from the worker the task runs on: a worker declared lost and come
        back cannot finish (or fail) a task that was given to another since."""
        task_id = getattr(message, "task_id", None)
        if task_id is None or isinstance(message, Log):
            return True
        task = self._store.get(task_id)
        if task is None or task.worker in (None, worker):
            return True
        log.warning("ignored %s of task %s from worker %s: it runs on %s", type(message).__name__, task_id, worker,
                    task.worker, extra={"task_id": task_id})  # fmt: skip
        return False

    def _on_ready(self, message: Ready, worker: str) -> None:
        log.info("worker %s ready: %s engine", worker, message.engine)
        with self._lock:
            entry = self._workers[worker]
            old = entry.state
            entry.state = replace(
                WorkerState(worker), ready=True, remote=old.remote, host=old.host, engine=message.engine,
                models=old.models, since=old.since, done=old.done, last_seen=time.time(),
            )  # fmt: skip
            default = self._default
        if default.key not in self._failed_loads.get(worker, {}):
            self.preload(default, only=worker)
        self.dispatch()

    def _on_loaded(self, message: Loaded, worker: str) -> None:
        variant = self._variants.get(message.variant)
        where = "" if worker == LOCAL else f" on worker {worker}"
        log.info("loaded %s in %.1f s%s", message.variant, message.seconds, where)
        with self._lock:
            entry = self._workers[worker]
            entry.state = entry.state.loaded(message.variant, message.evicted)
            self._load_deaths.pop((worker, message.variant), None)
        if variant is not None:
            self.ever_loaded.add(variant.model)
            self._forecaster.record_load(variant.cost_key, message.seconds, worker)
        self.dispatch()

    def _load_failed(self, variant: str, message: str, worker: str) -> None:
        log.error("%s cannot be loaded%s: %s", variant, "" if worker == LOCAL else f" on {worker}", message)
        with self._lock:
            self._failed_loads.setdefault(worker, {})[variant] = message
            entry = self._workers.get(worker)
            state = entry.state if entry is not None else WorkerState(worker)
            engine_task = state.task if state.task is not None and state.task.variant.key == variant else None
            if entry is not None:
                entry.state = replace(state, loading=None, task=None if engine_task else state.task)
        error = f"load failed: {message}"
        if engine_task is not None:
            if self.load_error(variant) is None:  # another worker may load it: the task waits for that one
                self._store.requeue(engine_task.id, count_attempt=False)
            elif self._store.mark_failed(engine_task.id, time.time(), error):
                self._ended_failed(engine_task.id, variant)
        if self.load_error(variant) is not None:  # no worker can: the tasks that need it fail, the others run
            for task_id in self._store.fail_waiting(variant, error):
                self._ended_failed(task_id, variant)
        self.dispatch()

    def _ended_failed(self, task_id: str, variant: str) -> None:
        self._inputs.delete(task_id)
        self._metrics.task_finished("failed")
        log.warning("task %s failed: %s cannot be loaded", task_id, variant, extra={"task_id": task_id})

    def _on_rendered(self, message: Rendered, worker: str) -> None:
        with self._lock:
            entry = self._workers[worker]
            entry.state = replace(entry.state, task=None, done=entry.state.done + 1)  # first: the engine is free
        self.dispatch()  # before the bookkeeping and learning below: the engine waits for none of it
        task = self._store.get(message.task_id)
        self._store.mark_rendered(message.task_id, message.at)
        self._changes.changed()  # now, not after the learning below: status answers are memoized per change
        if task is None:
            return
        p = task.params
        key = task.variant.cost_key
        cached = bool(message.prompt_cached)
        first = message.first_after_load
        forecast = self._forecaster.task_seconds(key, p.work_megapixels, p.steps_run, cached, first, worker)
        self._metrics.task_rendered(forecast, message.engine_seconds, message.step_seconds)
        log.debug(
            "task %s rendered in %.2f s (forecast %.2f s)", task.id, message.engine_seconds, forecast,
            extra={"task_id": task.id},
        )  # fmt: skip
        if message.loop_seconds and message.steps_run and message.before_loop_seconds is not None:
            self._forecaster.record(Timing(
                key, p.work_megapixels, message.steps_run, message.before_loop_seconds, message.loop_seconds,
                message.after_loop_seconds or 0.0, message.prompt_cached, message.first_after_load, worker,
            ))  # fmt: skip

    def _on_finished(self, message: Finished, worker: str) -> None:
        self._inputs.delete(message.task_id)  # the worker is done with them, whatever became of the task
        task = self._store.get(message.task_id)
        if task is None or not self._store.mark_done(message.task_id, message.at, message.image_bytes):
            if task is not None:  # cancelled while it was being encoded: nobody wants the image
                self._images.delete(task.id, task.output.format)
                log.debug("task %s: image discarded, cancelled meanwhile", task.id, extra={"task_id": task.id})
            self.dispatch()  # a re-run's image was the last thing in the worker: the next task may start
            return
        self._forecaster.encode.record(task.output.format.value, task.params.megapixels, message.encode_seconds)
        self.on_image_stored()
        self._metrics.latency_seconds.observe(max(message.at - task.submitted_at, 0.0))
        self._metrics.task_finished("done")
        log.info("task %s done (%d bytes)", task.id, message.image_bytes, extra={"task_id": task.id})
        self.dispatch()  # see _may_start

    def _on_failed(self, message: Failed, worker: str) -> None:
        self._inputs.delete(message.task_id)
        if self._store.mark_failed(message.task_id, message.at, f"{message.kind} failed: {message.message}"):
            self._metrics.task_finished("failed")
            log.warning("task %s failed: %s", message.task_id, message.message, extra={"task_id": message.task_id})
        if message.kind != "encoding":
            self._update(worker, task=None)
        self.dispatch()  # an encoding failure may end a re-run's turn alone in the worker

    def _on_cancelled(self, message: Cancelled, worker: str) -> None:
        with self._lock:
            stopping = self._stopping
            self._update(worker, task=None)
        if stopping:  # abandoned for shutdown, not by a client: it runs again after the restart
            if self._store.requeue(message.task_id, count_attempt=False):
                log.info("task %s waiting again: the server is stopping", message.task_id,
                         extra={"task_id": message.task_id})  # fmt: skip
        else:
            self._inputs.delete(message.task_id)
            log.info("task %s stopped mid-generation", message.task_id, extra={"task_id": message.task_id})
        self.dispatch()

    def on_worker_exit(
        self, exitcode: int | None, was_ready: bool, worker: str = LOCAL, reason: str | None = None
    ) -> None:
        """The worker's process ended (it will be started again, or the worker halts); `reason`: why it was
        killed, if it was (the watchdog's verdict)."""
        with self._lock:
            entry = self._workers.get(worker)
            if entry is None:
                return
            loading = entry.state.loading
            entry.state = entry.state.gone()
        self._requeue_after_death(worker, reason or describe_exit(exitcode), loading)
        self._changes.changed()

    def _requeue_after_death(self, worker: str, reason: str, loading: tuple[str, float] | None) -> None:
        """What a dead (or lost) worker held runs again, once: the death may have had nothing to do with it."""
        stopping = self._stopping
        running = self._store.running(worker)
        # Who is to blame: the task on the engine, if there was one; a task whose image was being encoded beside
        # it is not (it runs again, uncharged). With nothing on the engine, the encoded one is (a re-run after a
        # death runs alone, see _may_start, so a task that kills the worker by itself is found out).
        on_engine = any(task.started_at is not None and task.rendered_at is None for task in running)
        for task in running:
            innocent = on_engine and task.rendered_at is not None
            if stopping or task.started_at is None or innocent:
                if self._store.requeue(task.id, count_attempt=False):
                    why = ("the server is stopping" if stopping else f"its image was being stored: {reason}"
                           if innocent else f"it had not started: {reason}")  # fmt: skip
                    log.info("task %s waiting again: %s", task.id, why, extra={"task_id": task.id})
            elif task.attempts >= self._max_attempts:
                error = f"{reason} while running this task, {task.attempts} times; not retrying it"
                self._store.mark_failed(task.id, time.time(), error)
                self._inputs.delete(task.id)
                self._metrics.task_finished("failed")
                log.error("task %s failed: %s", task.id, error, extra={"task_id": task.id})
            else:
                self._store.requeue(task.id, count_attempt=True)
                self._metrics.retried.inc()
                log.warning("task %s will run again: %s", task.id, reason, extra={"task_id": task.id})
        if loading is not None and not stopping:
            self._died_loading(worker, loading[0], reason)

    def _died_loading(self, worker: str, variant: str, reason: str) -> None:
        deaths = self._load_deaths.get((worker, variant), 0) + 1
        self._load_deaths[(worker, variant)] = deaths
        if deaths >= LOAD_DEATHS_BEFORE_FAILING:
            self._load_failed(variant, f"{reason} while loading it, {deaths} times (too little memory for it?)", worker)
