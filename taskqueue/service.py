"""The queue as the HTTP layer sees it: submit, look up, fetch, cancel. It decides; the API translates.

`TaskService` owns the store, the image files, the forecaster, the scheduler and the worker's supervisor,
and answers every question about a task from the store plus the worker's shared status table.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taskqueue.errors import (
    EngineUnavailable,
    ImageNotAvailable,
    QueueError,
    QueueFull,
    StorageUnavailable,
    TaskNotFound,
)
from taskqueue.forecast import HISTORY_SIZE, MEGAPIXEL, CostModel, Forecaster, Workload, remaining_seconds
from taskqueue.images import ImageFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.scheduler import Scheduler
from taskqueue.store import NewTask, TaskStore
from taskqueue.tasks import TASK_ID_PATTERN, GenerationParams, ImageFormat, OutputSpec, Task, TaskStatus
from worker.engines.base import EngineConfig, EngineInfo, describe_engine
from worker.loop import WorkerSettings
from worker.status_table import StatusTable
from worker.supervisor import Supervisor

log = logging.getLogger("taskqueue")

MEMO_SIZE = 10_000  # most tasks' status answers memoized per version of the change feed
MAX_SEED = 2**32 - 1  # mflux seeds mx.random with it; keep it in the range every engine accepts


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: Path
    engine: EngineConfig = field(default_factory=EngineConfig)
    previews: bool = True
    max_attempts: int = 2  # runs of a task that keep killing the worker before it is failed
    max_waiting_tasks: int = 10_000
    max_waiting_per_client: int = 10_000
    retention_seconds: float = 24 * 3600.0  # unfetched images and finished tasks are forgotten after this
    max_stored_images: int = 1000
    max_stored_bytes: int | None = None  # unfetched images' total size; None: only the count is capped
    housekeeping_interval: float = 60.0  # seconds between retention sweeps (the first runs at start)
    log_prompts: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    """What a client asked for; None means "the engine's default"."""

    prompt: str
    seed: int | None = None
    width: int = 1024
    height: int = 1024
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    format: ImageFormat = ImageFormat.JPEG
    quality: int = 85
    priority: bool = False


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int


@dataclass(frozen=True)
class TaskView:
    """A task plus what only the live queue knows about it."""

    task: Task
    position: int | None  # waiting tasks ahead of it (0 = next); 0 while running; None once finished
    tasks_ahead: int  # everything ahead, the task on the engine included
    wait_remaining: float  # seconds until its image is ready
    progress: Progress | None
    previews: int = 0  # how many previews the running task has had so far


class TaskService:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        data_dir = settings.data_dir
        require_writable(data_dir)
        require_writable(data_dir / "images", "image directory")
        try:
            self.store = TaskStore(data_dir / "tasks.sqlite3")
        except sqlite3.Error as error:
            raise DataDirUnusable(f"cannot open the task database in {data_dir}: {error}") from error
        self.images = ImageFiles(data_dir / "images")
        self.preview_path = data_dir / "preview.jpg"
        info = describe_engine(settings.engine)
        self._engine_key = f"{info.name}:{info.model}"
        self._prior = CostModel.prior(info.seconds_per_step_at_1mp)
        self.forecaster = Forecaster(
            self._prior,
            self.store.observations(self._engine_key, HISTORY_SIZE),
            persist=lambda observation: self.store.add_observation(self._engine_key, observation),
        )
        self.metrics = QueueMetrics()
        self.scheduler = Scheduler(
            self.store, self.images, self.forecaster, info, settings.max_attempts, metrics=self.metrics
        )
        self.table = StatusTable(Supervisor.context())
        worker_settings = WorkerSettings(
            engine=settings.engine,
            preview_path=str(self.preview_path) if settings.previews else None,
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        self.supervisor = Supervisor(worker_settings, self.table, self.scheduler)
        self.scheduler.attach(self.supervisor)
        self._memo = _StoreMemo(-1)
        self._stop = threading.Event()
        self._housekeeper = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)

    @property
    def info(self) -> EngineInfo:
        return self.scheduler.info

    # -- life cycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        recovery = self.store.recover_interrupted(
            self.settings.max_attempts, "the server stopped while this task was running, too many times"
        )
        if recovery.requeued:
            log.warning("re-queued %d task(s) interrupted by the last shutdown", len(recovery.requeued))
        for task_id in recovery.requeued:
            log.info("task %s waiting again: interrupted by the last shutdown", task_id, extra={"task_id": task_id})
        for task_id in recovery.failed:
            log.error("task %s failed: interrupted by too many shutdowns", task_id, extra={"task_id": task_id})
        kept = [(t.id, t.output.format) for t in self.store.unfetched_images()]
        removed = self.images.remove_orphans(kept)
        if removed:
            log.info("removed %d stray file(s) from the image directory", len(removed))
        self.supervisor.start()
        self._housekeeper.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: the running task is abandoned at its next step and will run again after a restart."""
        self._stop.set()
        self.scheduler.stopping()
        self.supervisor.stop(timeout)
        self.scheduler.on_worker_exit(0, was_ready=False)  # whatever is still running goes back to waiting
        self.store.close()

    # -- submitting --------------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, client: str = "") -> TaskView:
        if self.scheduler.load_error is not None:
            raise EngineUnavailable(self.scheduler.load_error)
        # A halted supervisor (the worker died while loading, twice) will never run anything: accepting work
        # then meant tasks that waited forever behind a 200.
        if self.supervisor.halted_reason is not None:
            raise EngineUnavailable(
                f"The engine is unavailable: {self.supervisor.halted_reason}; see the server's log, fix the cause"
                " and restart the server."
            )
        self._check_capacity(client)
        info = self.info
        params = GenerationParams(
            prompt=request.prompt,
            seed=request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1),
            width=info.round_size(request.width),
            height=info.round_size(request.height),
            steps=request.steps if request.steps is not None else info.default_steps,
            guidance=self._guidance(request.guidance, info),
            negative_prompt=request.negative_prompt or None,
        )
        new = NewTask(params, OutputSpec(request.format, request.quality), request.priority, info.name, client)
        task = self.store.add(new)
        shown = repr(params.prompt) if self.settings.log_prompts else f"{len(params.prompt)} chars"
        log.info(
            "task %s waiting: %dx%d, %d steps, %s%s, prompt %s",
            task.id, params.width, params.height, params.steps, new.output.format.value,
            ", priority" if task.priority else "", shown, extra={"task_id": task.id},
        )  # fmt: skip
        # Forecast first: once dispatched to an idle engine, the task would be counted twice, as the engine's
        # current work and again as its own (a forecast of double the time).
        view = self.view(task)
        self.scheduler.dispatch()
        self.scheduler.changes.changed(joined_end=not task.priority)
        return view

    def submit_all(self, requests: Sequence[GenerationRequest], client: str = "") -> list[TaskView]:
        """Queue several images as one unit: if one is refused, those already queued are cancelled again."""
        views: list[TaskView] = []
        try:
            for request in requests:
                views.append(self.submit(request, client))  # noqa: PERF401 (the partial list is rolled back)
        except QueueError:
            for view in views:
                self.cancel(view.task.id)
            raise
        return views

    @staticmethod
    def _guidance(requested: float | None, info: EngineInfo) -> float:
        if requested is None or not info.guidance_adjustable:
            return info.default_guidance
        return requested

    def _check_capacity(self, client: str) -> None:
        limit, per_client = self.settings.max_waiting_tasks, self.settings.max_waiting_per_client
        if self.store.count_waiting() >= limit:
            log.info("refused a task from %s: %d tasks waiting, the limit", client or "-", limit)
            raise QueueFull(f"The queue is full ({limit} waiting tasks); try again later.", self._retry_after())
        if client and self.store.count_waiting(client) >= per_client:
            log.info("refused a task from %s: it has %d tasks waiting, the limit per client", client, per_client)
            raise QueueFull(
                f"You have {per_client} tasks waiting, the most one client may have; try again later.",
                self._retry_after(),
            )

    def _retry_after(self) -> int:
        return max(1, round(self._engine_remaining(time.time())))

    # -- looking up --------------------------------------------------------------------------------------

    def task(self, task_id: str) -> Task:
        task = self.store.get(task_id) if TASK_ID_PATTERN.fullmatch(task_id) else None
        if task is None:
            raise TaskNotFound(task_id)
        return task

    def status(self, task_id: str) -> TaskView:
        """What every waiting client polls, many times a second: answered from a memo of what the store held at
        the current version of the change feed, so polling an unchanged queue costs no query."""
        # Read before the store: a change after this empties the memo. A task joining the end of the queue
        # changes no other task's answer (see ChangeFeed.others_version); a new task is not in the memo yet.
        version = self.scheduler.changes.others_version
        memo = self._memo
        if memo.version != version:
            memo = self._memo = _StoreMemo(version)
        found = memo.tasks.get(task_id)
        if found is None:
            task = self.task(task_id)
            found = memo.remember(task, self.store.ahead_of(task) if task.status is TaskStatus.WAITING else None)
        task, ahead = found
        if ahead is not None:
            return self._waiting_views([task], time.time(), ahead)[0]
        return self._settled_view(task, time.time())

    def view(self, task: Task) -> TaskView:
        if task.status is TaskStatus.WAITING:
            return self._waiting_views([task], time.time())[0]
        return self._settled_view(task, time.time())

    def listed(
        self, statuses: tuple[TaskStatus, ...] = tuple(TaskStatus), limit: int = 10_000, offset: int = 0
    ) -> tuple[list[TaskView], int]:
        """Tasks in queue order (running, waiting, then finished-but-unfetched), and how many there are."""
        tasks, total = self.store.listed(statuses, limit, offset)
        now = time.time()
        waiting = self._waiting_views([t for t in tasks if t.status is TaskStatus.WAITING], now)
        by_id = {v.task.id: v for v in waiting}
        return [by_id.get(t.id) or self._settled_view(t, now) for t in tasks], total

    def _settled_view(self, task: Task, now: float) -> TaskView:
        """A task that is on the engine, being encoded, or finished."""
        if task.status is not TaskStatus.RUNNING:
            return TaskView(task, None, 0, 0.0, None)
        encode = self.forecaster.encode.seconds(task.output.format.value, task.params.pixels / MEGAPIXEL)
        # The scheduler lets go of a rendered task before the store records it (and a memoized task may predate
        # that record): a started task the engine no longer holds is rendered, not back at step 0.
        released = task.started_at is not None and self.scheduler.engine_task != task.id
        if task.rendered_at is not None or released:
            rendered_at = task.rendered_at if task.rendered_at is not None else now
            return TaskView(
                task,
                0,
                0,
                max(encode - (now - rendered_at), 0.0),
                Progress(task.params.steps, task.params.steps),
            )
        snapshot = self.table.snapshot()
        live = snapshot if snapshot is not None and snapshot.task_id == task.id else None
        progress = Progress(live.steps_done, live.steps) if live else Progress(0, task.params.steps)
        work = Workload.of(task.params.width, task.params.height, task.params.steps)
        remaining = remaining_seconds(self.forecaster.model, work, live.live_progress() if live else None, now)
        return TaskView(task, 0, 0, remaining + encode, progress, live.preview_count if live else 0)

    def _waiting_views(self, tasks: list[Task], now: float, ahead: Workload | None = None) -> list[TaskView]:
        """Waiting tasks in queue order; the work ahead of each is summed once (unless given), then carried forward."""
        if not tasks:
            return []
        model = self.forecaster.model
        engine_busy = self.scheduler.engine_task is not None
        engine_left = self._engine_remaining(now)
        ahead = self.store.ahead_of(tasks[0]) if ahead is None else ahead
        views = []
        for task in tasks:
            own = Workload.of(task.params.width, task.params.height, task.params.steps)
            encode = self.forecaster.encode.seconds(task.output.format.value, own.megapixels)
            wait = engine_left + model.seconds(ahead + own) + encode
            count = int(ahead.tasks)
            views.append(TaskView(task, count, count + engine_busy, wait, None))
            ahead = ahead + own
        return views

    def _engine_remaining(self, now: float) -> float:
        task_id = self.scheduler.engine_task
        if task_id is None:
            return 0.0
        # Every status poll of a waiting task comes here: the claimed task spares a store read.
        task = self.scheduler.engine_claim or self.store.get(task_id)
        if task is None:
            return 0.0
        return self._settled_view(task, now).wait_remaining - self.forecaster.encode.seconds(
            task.output.format.value, task.params.pixels / MEGAPIXEL
        )

    # -- images and previews -----------------------------------------------------------------------------

    def image(self, task_id: str, delete: bool = True) -> tuple[bytes, ImageFormat]:
        task = self.task(task_id)
        if task.status is not TaskStatus.DONE:
            reasons = {
                TaskStatus.WAITING: "is still waiting in the queue",
                TaskStatus.RUNNING: "is still being generated",
                TaskStatus.FAILED: f"failed: {task.error}",
                TaskStatus.CANCELLED: "was cancelled",
            }
            raise ImageNotAvailable(task_id, task.status.value, f"No image: task {task_id} {reasons[task.status]}.")
        try:
            data = self.images.read(task_id, task.output.format) if task.fetched_at is None else None
        except OSError as error:  # not "no such file": the directory itself is gone or unreadable
            raise StorageUnavailable(f"The image of task {task_id} cannot be read now: {error.strerror}.") from error
        if data is None:
            # `error` on a done task says why its image went unfetched (see expire_old)
            gone = f"was deleted: {task.error}" if task.error else "was already fetched and deleted"
            raise ImageNotAvailable(task_id, task.status.value, f"The image of task {task_id} {gone}.")
        if delete and self.store.mark_fetched(task_id):
            self.images.delete(task_id, task.output.format)
            log.info("task %s: image fetched and deleted", task_id, extra={"task_id": task_id})
        return data, task.output.format

    def preview(self, task_id: str) -> bytes | None:
        """The running task's latest preview JPEG, or None if it has none (yet)."""
        self.task(task_id)
        snapshot = self.table.snapshot()
        if snapshot is None or snapshot.task_id != task_id or snapshot.preview_count == 0:
            return None
        try:
            return self.preview_path.read_bytes()
        except FileNotFoundError:
            return None

    # -- cancelling --------------------------------------------------------------------------------------

    def cancel(self, task_id: str) -> Task:
        """Cancel a waiting task, or stop a running one at its next step; returns the task as it was."""
        if not TASK_ID_PATTERN.fullmatch(task_id):
            raise TaskNotFound(task_id)
        before = self.store.cancel(task_id)
        if before is None:
            raise TaskNotFound(task_id)
        self._cancelled([before])
        return before

    def wait_final(
        self,
        task_ids: Sequence[str],
        timeout: float | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        check_every: float = 0.5,
    ) -> list[Task]:
        """Block until every task has ended (done, failed or cancelled) and return them, in the given order.

        Wakes on the scheduler's change feed, not by polling the store. `cancelled` (e.g. "the client hung up")
        raises no event, so it is asked at least every `check_every` seconds; once it is true, the tasks that
        have not ended are cancelled. After `timeout` seconds the tasks are returned as they stand.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        changes = self.scheduler.changes
        while True:
            version = changes.version  # read before the tasks: a change in between ends the wait at once
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
            changes.wait(version, wait)

    def clear(self) -> list[Task]:
        cancelled = self.store.cancel_all()
        self._cancelled(cancelled)
        return cancelled

    def _cancelled(self, tasks: list[Task]) -> None:
        for task in tasks:
            if task.status is TaskStatus.RUNNING:
                self.table.request_cancel(task.id)
            if task.status in (TaskStatus.WAITING, TaskStatus.RUNNING):
                self.metrics.task_finished("cancelled")
                log.info("task %s cancelled (was %s)", task.id, task.status.value, extra={"task_id": task.id})
        self.scheduler.changes.changed()

    # -- health ------------------------------------------------------------------------------------------

    def health(self) -> dict:
        """ok: the worker is alive and its engine loaded or loading; otherwise `error` says why not."""
        counts = self.store.count_by_status()
        alive = self.supervisor.alive
        error = self.scheduler.load_error or self.supervisor.halted_reason
        if error is None and not alive:
            error = "the worker process is not running (it is being restarted, or the server is stopping)"
        return {
            "ok": error is None,
            "worker_alive": alive,
            "worker_pid": self.supervisor.pid,
            "model_loaded": self.scheduler.ready,
            "engine": self.info.name,
            "model": self.info.model,
            "error": error,
            "worker_restarts": self.supervisor.restarts,
            "waiting": counts.get("waiting", 0),
            "running": counts.get("running", 0),
        }

    # -- housekeeping ------------------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        # The first sweep runs at once: a server restarted after days must not wait a period to clean up.
        while True:
            try:
                self.expire_old(time.time())
            except Exception:
                log.exception("housekeeping failed")
            if self._stop.wait(self.settings.housekeeping_interval):
                return

    def expire_old(self, now: float) -> int:
        """Forget finished tasks past retention, then drop the oldest unfetched images beyond the stored-image
        limits (count and bytes), so an unattended server cannot fill its disk. Returns how many went."""
        forgotten = self.store.expire(now - self.settings.retention_seconds)
        for task in forgotten:
            if task.status is TaskStatus.DONE:
                self.images.delete(task.id, task.output.format)
            log.debug("task %s forgotten: finished over the retention time ago", task.id, extra={"task_id": task.id})
        if forgotten:
            hours = self.settings.retention_seconds / 3600
            log.info("forgot %d task(s) that finished over %g h ago", len(forgotten), hours)
        dropped = 0
        for task, reason in self._over_storage_limits(self.store.unfetched_images()):
            if self.store.drop_image(task.id, reason):
                self.images.delete(task.id, task.output.format)
                dropped += 1
                log.info("task %s: image deleted unfetched, %s", task.id, reason, extra={"task_id": task.id})
        if forgotten or dropped:
            self.scheduler.changes.changed()  # status answers are memoized per version of the feed
        return len(forgotten) + dropped

    def _over_storage_limits(self, unfetched: list[Task]) -> list[tuple[Task, str]]:
        """The oldest of `unfetched` (oldest first) that must go for the rest to fit the limits, with why."""
        count_limit, bytes_limit = self.settings.max_stored_images, self.settings.max_stored_bytes
        count, total = len(unfetched), sum(task.image_bytes or 0 for task in unfetched)
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


@dataclass
class _StoreMemo:
    """Tasks, and the work queued ahead of each waiting one, as the store held them at one `others_version` of
    the scheduler's change feed. Every change that could alter a memoized answer bumps it, so a memo of the
    current version is exact; a new version starts a new memo. Live progress is never memoized."""

    version: int
    tasks: dict[str, tuple[Task, Workload | None]] = field(default_factory=dict)

    def remember(self, task: Task, ahead: Workload | None) -> tuple[Task, Workload | None]:
        if len(self.tasks) < MEMO_SIZE:
            self.tasks[task.id] = (task, ahead)
        return task, ahead


class DataDirUnusable(OSError):
    """The data directory cannot hold the queue; raised at start-up, with the directory in the message."""


def require_writable(directory: Path, what: str = "data directory") -> None:
    """Fail at start-up, naming the directory, rather than failing every task later (or crash-looping)."""
    if directory.exists() and not directory.is_dir():
        raise DataDirUnusable(f"the {what} {directory} is not a directory")
    probe = directory / f".write-test-{secrets.token_hex(4)}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise DataDirUnusable(f"the {what} {directory} is not writable: {error.strerror or error}") from error
