"""The queue as the HTTP layer sees it: submit, look up, fetch, cancel. It decides; the API translates.

`TaskService` owns the store, the image files, the forecaster, the scheduler and the worker's supervisor,
and answers every question about a task from the store plus the worker's shared status table.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from taskqueue.errors import EngineUnavailable, ImageNotAvailable, QueueFull, TaskNotFound
from taskqueue.forecast import HISTORY_SIZE, MEGAPIXEL, CostModel, Forecaster, Workload, remaining_seconds
from taskqueue.images import ImageFiles
from taskqueue.scheduler import Scheduler
from taskqueue.store import NewTask, TaskStore
from taskqueue.tasks import TASK_ID_PATTERN, GenerationParams, ImageFormat, OutputSpec, Task, TaskStatus
from worker.engines.base import EngineConfig, EngineInfo, describe_engine
from worker.loop import WorkerSettings
from worker.status_table import StatusTable
from worker.supervisor import Supervisor

log = logging.getLogger("taskqueue")

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
    housekeeping_interval: float = 60.0
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
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = TaskStore(data_dir / "tasks.sqlite3")
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
        self.scheduler = Scheduler(self.store, self.images, self.forecaster, info, settings.max_attempts)
        self.table = StatusTable(Supervisor.context())
        worker_settings = WorkerSettings(
            engine=settings.engine,
            preview_path=str(self.preview_path) if settings.previews else None,
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        self.supervisor = Supervisor(worker_settings, self.table, self.scheduler)
        self.scheduler.attach(self.supervisor)
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
        self.scheduler.dispatch()
        self.scheduler.changes.changed()
        return self.view(task)

    @staticmethod
    def _guidance(requested: float | None, info: EngineInfo) -> float:
        if requested is None or not info.guidance_adjustable:
            return info.default_guidance
        return requested

    def _check_capacity(self, client: str) -> None:
        limit, per_client = self.settings.max_waiting_tasks, self.settings.max_waiting_per_client
        if self.store.count_waiting() >= limit:
            raise QueueFull(f"The queue is full ({limit} waiting tasks); try again later.", self._retry_after())
        if client and self.store.count_waiting(client) >= per_client:
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
        return self.view(self.task(task_id))

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
        if task.rendered_at is not None:
            return TaskView(
                task,
                0,
                0,
                max(encode - (now - task.rendered_at), 0.0),
                Progress(task.params.steps, task.params.steps),
            )
        snapshot = self.table.snapshot()
        live = snapshot if snapshot is not None and snapshot.task_id == task.id else None
        progress = Progress(live.steps_done, live.steps) if live else Progress(0, task.params.steps)
        work = Workload.of(task.params.width, task.params.height, task.params.steps)
        remaining = remaining_seconds(self.forecaster.model, work, live.live_progress() if live else None, now)
        return TaskView(task, 0, 0, remaining + encode, progress, live.preview_count if live else 0)

    def _waiting_views(self, tasks: list[Task], now: float) -> list[TaskView]:
        """Waiting tasks in queue order; the work ahead of each is summed once, then carried forward."""
        if not tasks:
            return []
        model = self.forecaster.model
        engine_busy = self.scheduler.engine_task is not None
        engine_left = self._engine_remaining(now)
        ahead = self.store.ahead_of(tasks[0])
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
        task = self.store.get(task_id)
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
        data = self.images.read(task_id, task.output.format) if task.fetched_at is None else None
        if data is None:
            raise ImageNotAvailable(
                task_id, task.status.value, f"The image of task {task_id} was already fetched and deleted."
            )
        if delete and self.store.mark_fetched(task_id):
            self.images.delete(task_id, task.output.format)
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

    def clear(self) -> list[Task]:
        cancelled = self.store.cancel_all()
        self._cancelled(cancelled)
        return cancelled

    def _cancelled(self, tasks: list[Task]) -> None:
        for task in tasks:
            if task.status is TaskStatus.RUNNING:
                self.table.request_cancel(task.id)
            if task.status in (TaskStatus.WAITING, TaskStatus.RUNNING):
                log.info("task %s cancelled (was %s)", task.id, task.status.value, extra={"task_id": task.id})
        self.scheduler.changes.changed()

    # -- health ------------------------------------------------------------------------------------------

    def health(self) -> dict:
        counts = self.store.count_by_status()
        return {
            "ok": self.supervisor.alive and self.scheduler.load_error is None and self.supervisor.halted_reason is None,
            "worker_alive": self.supervisor.alive,
            "worker_pid": self.supervisor.pid,
            "model_loaded": self.scheduler.ready,
            "engine": self.info.name,
            "model": self.info.model,
            "error": self.scheduler.load_error or self.supervisor.halted_reason,
            "worker_restarts": self.supervisor.restarts,
            "waiting": counts.get("waiting", 0),
            "running": counts.get("running", 0),
        }

    # -- housekeeping ------------------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        while not self._stop.wait(self.settings.housekeeping_interval):
            try:
                self.expire_old(time.time())
            except Exception:
                log.exception("housekeeping failed")

    def expire_old(self, now: float) -> int:
        """Forget finished tasks past retention and the oldest images beyond the stored-image limit."""
        forgotten = self.store.expire(now - self.settings.retention_seconds)
        unfetched = self.store.unfetched_images()
        excess = unfetched[: max(len(unfetched) - self.settings.max_stored_images, 0)]
        for task in excess:
            if self.store.mark_fetched(task.id):
                log.info("task %s: image dropped, over the stored-image limit", task.id, extra={"task_id": task.id})
        for task in [*forgotten, *excess]:
            if task.status is TaskStatus.DONE:
                self.images.delete(task.id, task.output.format)
        return len(forgotten) + len(excess)
