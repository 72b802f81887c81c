"""The queue as the HTTP layer sees it: submit, look up, fetch, cancel. It decides; the APIs translate.

`TaskService` is a façade over the assembled parts (taskqueue/assembly.py): the only thing the HTTP layer
talks to. It enforces the request rules (core/rules.py) on every submission, whoever makes it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from prometheus_client.metrics_core import Metric

from core import inputs, rules
from core.errors import (
    EngineUnavailable,
    ImageNotAvailable,
    InvalidRequest,
    NotPermitted,
    QueueFull,
    StorageUnavailable,
    TaskNotFound,
)
from core.models import Lora, ModelInfo, Variant
from core.rules import Limits
from core.submissions import Caller, GenerationRequest
from core.tasks import ImageFormat, OutputSpec, Task, TaskStatus, is_task_id, new_task_id
from taskqueue.forecast import LOCAL
from taskqueue.health import Health
from taskqueue.models import ModelListing, listing
from taskqueue.parts import Parts
from taskqueue.store import Capacity, NewTask, OverCapacity
from taskqueue.waits import TaskView
from taskqueue.workers import WorkerListing, listings

__all__ = ["ANYONE", "ModelListing", "TaskService", "TaskView"]

log = logging.getLogger("taskqueue")

ANYONE = Caller()  # a Python caller of the service: an admin with no client identity

NOT_AVAILABLE = {
    TaskStatus.WAITING: "is still waiting in the queue",
    TaskStatus.RUNNING: "is still being generated",
    TaskStatus.CANCELLED: "was cancelled",
}


class TaskService:
    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._settings = parts.settings
        self._store = parts.store
        self._waits = parts.waits

    # -- what the server is ------------------------------------------------------------------------------

    @property
    def engine(self) -> str:
        return self._parts.catalog.engine

    @property
    def default_model(self) -> ModelInfo:
        return self._parts.catalog.get(self._parts.scheduler.default_variant.model)

    @property
    def default_variant(self) -> Variant:
        return self._parts.scheduler.default_variant

    @property
    def mlx_cache_limit(self) -> int:
        """MLX's buffer cache limit in bytes, as the original's /api/ps reports it (0: MLX's own default)."""
        return self._settings.engine.mlx_cache_limit_bytes or 0

    def lora_names(self) -> list[str]:
        return sorted(self._parts.loras)

    @property
    def limits(self) -> Limits:
        return self._settings.limits

    @property
    def previews_enabled(self) -> bool:
        return self._settings.previews

    # -- life cycle --------------------------------------------------------------------------------------

    def start(self, base_url: str = "") -> None:
        """Recover from the last run and start the worker and the threads; `base_url` (http://host:port) is the
        server's own address, for the image links of webhook calls."""
        recovery = self._store.recover_interrupted(
            self._settings.max_attempts,
            "the server stopped while this task was running, too many times",
            keep_remote=self._parts.remote is not None,
        )
        if recovery.requeued:
            log.warning("re-queued %d task(s) interrupted by the last shutdown", len(recovery.requeued))
        for task_id in recovery.requeued:
            log.info("task %s waiting again: interrupted by the last shutdown", task_id, extra={"task_id": task_id})
        for task_id in recovery.failed:
            log.error("task %s failed: interrupted by too many shutdowns", task_id, extra={"task_id": task_id})
        self._cancel_awaited()  # after a crash: the calls that waited for them died with the server
        kept = [(t.id, t.output.format) for t in self._store.unfetched_images()]
        removed = self._parts.images.remove_orphans(kept)
        if removed:
            log.info("removed %d stray file(s) from the image directory", len(removed))
        inputs = self._parts.inputs
        stray = inputs.remove_orphans(t.id for t in self._store.with_inputs())
        if stray:
            log.info("removed the inputs of %d forgotten task(s)", len(stray))
        if self._settings.local_worker:
            self._parts.supervisor.start()
        if self._parts.remote is not None:
            self._parts.remote.start()
        self._parts.housekeeper.start()
        self._parts.webhooks.start(base_url)
        if self._parts.watchdog is not None:
            self._parts.watchdog.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: the running task is abandoned at its next step and will run again after a restart."""
        self._parts.housekeeper.stop()
        self._parts.webhooks.stop()  # calls not made yet stay in the outbox, for the next start
        if self._parts.watchdog is not None:
            self._parts.watchdog.stop()
            timeout = self._parts.watchdog.shutdown_grace(LOCAL, timeout)
        self._parts.scheduler.stop_dispatching()
        if self._parts.remote is not None:
            self._parts.remote.stop()  # remote workers carry on; their messages wait in Redis for the restart
        if self._settings.local_worker:
            self._parts.supervisor.stop(timeout)
        self._parts.scheduler.requeue_running(keep_remote=self._parts.remote is not None)
        self._cancel_awaited()
        self._store.close()

    # -- submitting --------------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, caller: Caller = ANYONE) -> TaskView:
        return self.submit_all([request], caller)[0]

    def submit_all(
        self, requests: Sequence[GenerationRequest], caller: Caller = ANYONE, awaited: bool = False
    ) -> list[TaskView]:
        """Queue several images as one unit: all of them, or none (the first problem is raised). `awaited`: the
        caller waits for them on its connection (a blocking call), so they end if that connection does."""
        self._require_engine()
        limits = self.limits
        if problem := rules.count_problem(len(requests), limits):
            raise InvalidRequest({"count": [problem]})
        decoded: dict[tuple[bytes, ...], inputs.Decoded] = {}  # a batch of one image decodes it once
        news: list[NewTask] = []
        try:
            for request in requests:
                new, files = self._new_task(request, caller, decoded)
                new = replace(new, awaited=awaited) if awaited else new
                if files:  # on disk before the task exists: the worker may take it the moment it is inserted
                    self._check_input_room(sum(len(data) for data in files.values()))
                    self._parts.inputs.write(new.task_id, files)
                news.append(new)
            with self._writing("queue the task"):
                tasks = self._store.add_all(news, Capacity(limits.max_waiting, rules.waiting_cap(caller, limits)))
        except OverCapacity as over:
            self._forget_inputs(news)
            raise self._queue_full(over, caller) from None
        except BaseException:
            self._forget_inputs(news)
            raise
        for task in tasks:
            self._log_submitted(task)
        # Forecast first: once dispatched to an idle engine, the task would be counted twice, as the engine's
        # current work and again as its own (a forecast of double the time).
        now = time.time()
        views = [self._waits.view(task, now) for task in tasks]
        self._parts.scheduler.dispatch()
        self._parts.changes.changed(joined=True)  # their views, just made, put them in the plan
        return views

    def _check_input_room(self, size: int) -> None:
        """Waiting tasks' input images count towards --max-stored-mb; beyond it, new ones wait their turn."""
        cap = self._settings.storage.max_stored_bytes
        held = self._parts.inputs.stored_bytes()
        if cap is not None and held + size > cap:
            raise QueueFull(
                f"The input images of waiting tasks take {held / 1e6:.1f} MB of the {cap / 1e6:g} MB this server "
                "stores (--max-stored-mb); try again once some have run.",
                retry_after_seconds=30,
            )

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """A change the store must record: if the data directory cannot take it (full, read-only), the client
        gets a 503 that says so, health says so, until the scheduler sees a write work again."""
        try:
            yield
        except sqlite3.OperationalError as error:
            self._parts.scheduler.storage_failed(error, what)
            raise StorageUnavailable(
                f"The server cannot {what} now: its data directory cannot be written ({error}). Free space on "
                "it or make it writable again; the server carries on by itself once it can."
            ) from error

    def _cancel_awaited(self) -> None:
        for task in self._store.cancel_awaited():
            self._parts.inputs.delete(task.id)
            log.info("task %s cancelled: the call that waited for it ended with the server", task.id,
                     extra={"task_id": task.id})  # fmt: skip

    def _forget_inputs(self, news: list[NewTask]) -> None:
        for new in news:
            if new.task_id is not None:
                self._parts.inputs.delete(new.task_id)

    def _new_task(
        self, request: GenerationRequest, caller: Caller, decoded: dict[tuple[bytes, ...], inputs.Decoded]
    ) -> tuple[NewTask, dict[str, bytes]]:
        """The task to insert, and its input files (name → bytes), for a request that has no problems."""
        model, variant = self._variant_for(request)
        if problems := rules.request_problems(request, self.limits, model):
            raise InvalidRequest(problems)
        # Where a callback points is known only by resolving its host (checked again at every call).
        if request.callback_url is not None and (problem := self._parts.webhooks.problem(request.callback_url)):
            raise InvalidRequest({"callback_url": [problem]})
        if error := self._parts.scheduler.load_error(variant.key):
            raise EngineUnavailable(f"The model {variant.key} cannot be loaded: {error}")
        limits, pictures = self.limits, None
        if request.init_images or request.mask is not None:
            key = (*request.init_images, request.mask.data if request.mask else b"")
            if key not in decoded:
                decoded[key] = inputs.decode_request(request, limits.max_input_bytes, limits.max_input_side)
            pictures = decoded[key]
        params = rules.to_params(request, limits, model, pictures.first_size if pictures else None)
        files: dict[str, bytes] = {}
        if pictures is not None:
            prepared = inputs.prepare(request, pictures, params, model)
            params, files = prepared.params, prepared.files
        new = NewTask(params, OutputSpec(request.format, request.quality), request.priority, model.engine, variant,
                      caller.client, request.callback_url, task_id=new_task_id() if files else None,
                      owner=caller.owner)  # fmt: skip
        return new, files

    def _variant_for(self, request: GenerationRequest) -> tuple[ModelInfo, Variant]:
        """The model a request names (or the default), checked against what this server offers."""
        default = self._parts.scheduler.default_variant
        catalog = self._parts.catalog
        name = request.model or default.model
        model = catalog.find(name)
        if model is None:
            offered = ", ".join(m.name for m in catalog.offered_models())
            raise InvalidRequest({"model": [f"Unknown model {name!r}; this server offers: {offered} (GET /api/ls)."]})
        if model.name not in catalog.offered:
            raise InvalidRequest({"model": [
                f"The model {model.name} is not offered by this server. To offer it, start the server with "
                f"--models {model.name} (and --allow-downloads, if its weights are not on the server yet)."
            ]})  # fmt: skip
        if not self._may_load(model, default):
            raise InvalidRequest({"model": [
                f"The weights of {model.name} ({model.repo}) are not on this server, and it does not download "
                f"weights for a request. Download them once (`mflux-generate --model {model.name} --prompt x "
                "--steps 1`), or start the server with --allow-downloads."
            ]})  # fmt: skip
        loras = self._loras(request)
        if model.name == default.model and request.quantize in (None, default.quantize) and not request.loras:
            return model, default
        return model, Variant(model.name, request.quantize, loras)

    def _may_load(self, model: ModelInfo, default: Variant) -> bool:
        catalog = self._parts.catalog
        return (
            model.name in catalog.present
            or model.name == default.model
            or self._settings.engine.allow_downloads
            or model.name in self._parts.scheduler.ever_loaded
        )

    def _loras(self, request: GenerationRequest) -> tuple[Lora, ...]:
        library = self._parts.loras
        found = []
        for index, wanted in enumerate(request.loras):
            path = library.get(wanted.name)
            if path is None:
                names = ", ".join(sorted(library)) or "none (the server has no LoRA library: --lora-dir)"
                raise InvalidRequest({f"loras.{index}.name": [f"No LoRA named {wanted.name!r}; available: {names}."]})
            found.append(Lora(wanted.name, str(path), wanted.scale))
        return tuple(found)

    def _require_engine(self) -> None:
        """Refuse work no worker will ever run: the local engine broken (and no other worker), or halted."""
        scheduler = self._parts.scheduler
        if any(state.available for state in scheduler.workers() if state.name != LOCAL):
            return  # a worker on another machine takes it
        local = scheduler.worker(LOCAL)
        if local is None:
            if scheduler.workers():
                return  # remote workers that are starting, or between tasks: the task waits for them
            raise EngineUnavailable(
                "No worker: this server runs none itself (--no-local-worker) and none has registered through "
                "the broker yet; start mflux-server-worker on a machine."
            )
        if local.engine_error is not None:
            raise EngineUnavailable(local.engine_error)
        # A halted supervisor (the worker died while loading, twice) will never run anything: accepting work
        # then meant tasks that waited forever behind a 200.
        halted = self._parts.supervisor.halted_reason
        if halted is not None:
            raise EngineUnavailable(
                f"The engine is unavailable: {halted}; see the server's log, fix the cause and restart the server."
            )

    def _queue_full(self, over: OverCapacity, caller: Caller) -> QueueFull:
        retry_after = max(1, round(self._waits.engine_remaining(time.time())))
        if over.scope == "client":
            log.info("refused a task from %s: it has %d tasks waiting, the limit per client", caller.client, over.limit)
            message = f"You have {over.limit} tasks waiting, the most one client may have; try again later."
        else:
            log.info("refused a task from %s: %d tasks waiting, the limit", caller.client or "-", over.limit)
            message = f"The queue is full ({over.limit} waiting tasks); try again later."
        return QueueFull(message, retry_after)

    def _log_submitted(self, task: Task) -> None:
        params = task.params
        shown = repr(params.prompt) if self._settings.log_prompts else f"{len(params.prompt)} chars"
        pictures = params.input_pictures
        inputs = f", {pictures} input image(s)" + (", masked" if params.masked else "") if pictures else ""
        log.info(
            "task %s waiting: %s, %dx%d, %d steps, %s%s%s, prompt %s",
            task.id, task.variant.key, params.width, params.height, params.steps, task.output.format.value,
            ", priority" if task.priority else "", inputs, shown, extra={"task_id": task.id},
        )  # fmt: skip

    # -- looking up --------------------------------------------------------------------------------------
    # A task another key owns is, to a user key, unknown: the same TaskNotFound as for an id that never was, so
    # that nothing tells it the task exists (core/rules.py `may_see` is the rule).

    def task(self, task_id: str, caller: Caller = ANYONE) -> Task:
        task = self._store.get(task_id) if is_task_id(task_id) else None
        if task is None or not rules.may_see(caller, task.owner):
            raise TaskNotFound(task_id)
        return task

    def status(self, task_id: str, caller: Caller = ANYONE) -> TaskView:
        view = self._waits.status(task_id, time.time())
        if not rules.may_see(caller, view.task.owner):
            raise TaskNotFound(task_id)
        return view

    def listed(
        self,
        statuses: tuple[TaskStatus, ...] = tuple(TaskStatus),
        limit: int = 10_000,
        offset: int = 0,
        caller: Caller = ANYONE,
    ) -> tuple[list[TaskView], int]:
        """Tasks in queue order (running, waiting, then finished-but-unfetched), and how many there are. To a user
        key: the whole queue, other keys' tasks in it anonymous (`TaskView.anonymous`), and its own finished ones."""
        tasks, total = self._store.listed(statuses, limit, offset, owner=rules.visible_owner(caller))
        views = self._waits.views(tasks, time.time())
        return [
            view if rules.may_see(caller, view.task.owner) else replace(view, anonymous=True) for view in views
        ], total

    def own_tasks(self, caller: Caller, statuses: tuple[TaskStatus, ...] = tuple(TaskStatus)) -> list[TaskView]:
        """The tasks this very client queued (its client identity: a key's name, or the single key or no key
        and an address), in queue order; what A1111's progress and interrupt concern."""
        tasks, _ = self._store.listed(statuses, 10_000, 0, client=caller.client)
        return self._waits.views(tasks, time.time())

    # -- images and previews -----------------------------------------------------------------------------

    def image(self, task_id: str, delete: bool = True, caller: Caller = ANYONE) -> tuple[bytes, ImageFormat]:
        task = self.task(task_id, caller)
        if task.status is not TaskStatus.DONE:
            reason = f"failed: {task.error}" if task.status is TaskStatus.FAILED else NOT_AVAILABLE[task.status]
            raise ImageNotAvailable(task_id, task.status.value, f"No image: task {task_id} {reason}.")
        try:
            data = self._parts.images.read(task_id, task.output.format) if task.fetched_at is None else None
        except OSError as error:  # not "no such file": the directory itself is gone or unreadable
            reason = error.strerror or str(error)
            raise StorageUnavailable(f"The image of task {task_id} cannot be read now: {reason}.") from error
        if data is None:
            task = self._store.get(task_id) or task  # a fetcher beside us may have taken it and deleted the file
            if task.error:  # on a done task: why its image went unfetched (see Housekeeper)
                gone = f"was deleted: {task.error}"
            elif task.fetched_at is not None:
                gone = "was already fetched and deleted"
            else:
                gone = "is missing from the data directory: its file was removed outside the server"
            raise ImageNotAvailable(task_id, task.status.value, f"The image of task {task_id} {gone}.")
        with self._writing("hand out and delete the image"):
            fetched = delete and self._store.mark_fetched(task_id)
        if fetched:
            self._parts.images.delete(task_id, task.output.format)
            log.info("task %s: image fetched and deleted", task_id, extra={"task_id": task_id})
        return data, task.output.format

    def preview(self, task_id: str, caller: Caller = ANYONE) -> bytes | None:
        """The running task's latest preview JPEG, or None if it has none (yet)."""
        task = self.task(task_id, caller)
        worker = task.worker or LOCAL
        live = self._parts.scheduler.live(worker)
        if task.status is not TaskStatus.RUNNING or live is None or live.task_id != task_id or not live.preview_count:
            return None
        if worker != LOCAL:
            return self._parts.scheduler.preview(worker, task_id)
        try:
            return self._parts.preview_path.read_bytes()
        except FileNotFoundError:
            return None

    # -- cancelling --------------------------------------------------------------------------------------

    def cancel(self, task_id: str, caller: Caller = ANYONE) -> Task:
        """Cancel a waiting task, or stop a running one at its next step; returns the task as it was."""
        with self._writing("cancel the task"):
            before = self._store.cancel(task_id, rules.visible_owner(caller)) if is_task_id(task_id) else None
        if before is None:
            raise TaskNotFound(task_id)
        self._cancelled([before])
        return before

    def clear(self, caller: Caller = ANYONE) -> list[Task]:
        """Cancel every waiting and running task (a user key's: its own); returns them as they were."""
        with self._writing("cancel the tasks"):
            cancelled = self._store.cancel_all(rules.visible_owner(caller))
        self._cancelled(cancelled)
        return cancelled

    def _cancelled(self, tasks: list[Task]) -> None:
        for task in tasks:
            if task.status is TaskStatus.WAITING:  # a running one's are the worker's until it lets go
                self._parts.inputs.delete(task.id)
            if task.status is TaskStatus.RUNNING:
                self._parts.scheduler.cancel_running(task)
            if task.status in (TaskStatus.WAITING, TaskStatus.RUNNING):
                self._parts.metrics.task_finished("cancelled")
                log.info("task %s cancelled (was %s)", task.id, task.status.value, extra={"task_id": task.id})
        self._parts.changes.changed()

    # -- waiting -----------------------------------------------------------------------------------------

    @property
    def change_version(self) -> int:
        """A counter that moves whenever any task changes; pass it to `wait_for_change`."""
        return self._parts.changes.version

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until some task has changed since `since` (a `change_version`), or `timeout` seconds."""
        return self._parts.changes.wait(since, timeout)

    def wait_final(
        self,
        task_ids: Sequence[str],
        timeout: float | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        check_every: float = 0.5,
    ) -> list[Task]:
        """Block until every task has ended (done, failed or cancelled) and return them, in the given order.

        Wakes on the change feed, not by polling the store. `cancelled` (e.g. "the client hung up") raises no
        event, so it is asked at least every `check_every` seconds; once it is true, the tasks that have not
        ended are cancelled. After `timeout` seconds the tasks are returned as they stand.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            version = self.change_version  # read before the tasks: a change in between ends the wait at once
            tasks = [self.task(task_id) for task_id in task_ids]
            unfinished = [task for task in tasks if not task.status.is_final]
            if not unfinished:
                return tasks
            if cancelled():
                for task in unfinished:
                    self.cancel(task.id)
                return [self.task(task_id) for task_id in task_ids]
            wait = check_every if deadline is None else min(check_every, deadline - time.monotonic())
            if wait <= 0:
                return tasks
            self.wait_for_change(version, wait)

    # -- models ------------------------------------------------------------------------------------------

    def models(self) -> list[ModelListing]:
        """Every model of the engine's catalog, with what this server does with it now."""
        parts = self._parts
        return [listing(model, parts.catalog, parts.scheduler, parts.forecaster) for model in parts.catalog.models]

    def find_model(self, name: str) -> ModelInfo | None:
        """The offered model a name or alias means, or None."""
        model = self._parts.catalog.find(name)
        return model if model is not None and model.name in self._parts.catalog.offered else None

    def load_model(
        self, name: str, quantize: int | None = None, timeout: float = 1800.0, caller: Caller = ANYONE
    ) -> Variant:
        """Make a model the default for tasks that name none, and wait until it is loaded (as the original's
        POST /api/load did); raises InvalidRequest for a model not offered, EngineUnavailable if it fails,
        NotPermitted for a user key (the default is every client's)."""
        if not rules.may_manage_server(caller):
            raise NotPermitted(
                "Only an admin key may change the server's default model; name the model in each request instead."
            )
        model, variant = self._variant_for(GenerationRequest(prompt="-", model=name, quantize=quantize))
        if problems := rules.request_problems(GenerationRequest(prompt="-", quantize=quantize), self.limits):
            raise InvalidRequest(problems)
        if problem := rules.default_model_problem(model):
            raise InvalidRequest({"model": [problem]})
        scheduler = self._parts.scheduler
        scheduler.make_default(variant)
        log.info("default model is now %s", variant.key)
        deadline = time.monotonic() + timeout
        while True:
            version = self.change_version
            if any(variant.key in state.warm for state in scheduler.workers()):
                return variant
            if error := scheduler.load_error(variant.key):
                raise EngineUnavailable(f"The model {variant.key} cannot be loaded: {error}")
            self._require_engine()
            left = deadline - time.monotonic()
            if left <= 0:
                return variant  # still loading: the default has changed all the same
            self.wait_for_change(version, min(left, 1.0))

    # -- health and metrics ------------------------------------------------------------------------------

    def health(self) -> Health:
        """ok: some worker works and the default model is loaded or loading there (not failed to load) — the
        local worker alive with its engine, or one on another machine; otherwise `error` says why not."""
        counts = self._store.count_by_status()
        supervisor, scheduler = self._parts.supervisor, self._parts.scheduler
        workers, default = scheduler.workers(), scheduler.default_variant
        local = scheduler.worker(LOCAL)
        error = None
        hang = self._parts.watchdog.last_hang if self._parts.watchdog is not None else None
        if local is not None:
            error = local.engine_error or supervisor.halted_reason
            if error is None and not supervisor.alive:
                error = "the worker process is not running (it is being restarted, or the server is stopping)"
            if error is None and hang is not None and hang.worker == LOCAL and not local.ready:
                error = f"the worker hung ({hang.reason}); it is being restarted"
            if error is None and (overdue := self._parts.watchdog and self._parts.watchdog.overdue(local, time.time())):
                error = f"the worker is hung: {overdue}"
        elif not workers:
            error = "no worker: none runs here (--no-local-worker) and none has registered through the broker"
        remote_ready = [state for state in workers if state.remote and state.available]
        if error is not None and remote_ready:
            error = None  # another machine's worker serves meanwhile (the local trouble is in /api/workers)
        storage = scheduler.storage_error or self._parts.images.problem()
        if storage is not None:  # first: nothing moves until the store takes writes again
            error = f"the data directory cannot be written ({storage}): free space on it or make it writable"
        if error is None and (load_error := scheduler.load_error(default.key)):
            error = f"the default model {default.key} cannot be loaded: {load_error}"
        loaded = tuple(dict.fromkeys(key for state in workers for key in state.warm))
        loading = next((state.loading[0] for state in workers if state.loading), None)
        return Health(
            ok=error is None,
            worker_alive=supervisor.alive if local is not None else bool(remote_ready),
            worker_pid=supervisor.pid if local is not None else None,
            model_loaded=default.key in loaded,
            engine=self.engine,
            model=default.key,
            error=error,
            worker_restarts=supervisor.restarts,
            waiting=counts.get("waiting", 0),
            running=counts.get("running", 0),
            loaded=loaded,
            loading=loading,
            workers=len(workers),
            workers_ready=sum(1 for state in workers if state.available),
        )

    def workers(self, caller: Caller = ANYONE) -> list[WorkerListing]:
        """Every worker: this server's own and those on other machines (with --broker), what each is doing; to
        a user key, the id of another key's task is not shown (its progress is, as in the queue)."""
        scheduler = self._parts.scheduler
        found = listings(scheduler, self._parts.forecaster, self._parts.remote)
        return [
            worker
            if worker.task_id is None or self._sees_task_of(caller, worker.name)
            else replace(worker, task_id=None)
            for worker in found
        ]

    def _sees_task_of(self, caller: Caller, worker: str) -> bool:
        state = self._parts.scheduler.worker(worker)
        return state is not None and state.task is not None and rules.may_see(caller, state.task.owner)

    @property
    def broker_reachable(self) -> bool | None:
        """None without --broker."""
        return self._parts.remote.reachable if self._parts.remote is not None else None

    def count_by_status(self) -> dict[str, int]:
        return self._store.count_by_status()

    def stored_images(self) -> tuple[int, int]:
        """How many unfetched images there are, and their bytes."""
        return self._store.stored_images()

    def counters(self) -> Iterator[Metric]:
        """The queue's counters and histograms (outcomes, durations, forecast error), for /metrics."""
        return self._parts.metrics.collect()
