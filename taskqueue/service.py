"""The queue as the HTTP layer sees it: submit, look up, fetch, cancel. It decides; the APIs translate.

`TaskService` is a façade over the assembled parts (taskqueue/assembly.py): the only thing the HTTP layer
talks to. It enforces the request rules (core/rules.py) on every submission, whoever makes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import Metric

from core import rules
from core.engines import EngineInfo
from core.errors import (
    EngineUnavailable,
    ImageNotAvailable,
    InvalidRequest,
    QueueFull,
    StorageUnavailable,
    TaskNotFound,
)
from core.rules import Limits
from core.submissions import Caller, GenerationRequest
from core.tasks import ImageFormat, OutputSpec, Task, TaskStatus, is_task_id
from taskqueue.health import Health
from taskqueue.parts import Parts
from taskqueue.store import Capacity, NewTask, OverCapacity
from taskqueue.waits import TaskView

__all__ = ["ANYONE", "TaskService", "TaskView"]

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
    def info(self) -> EngineInfo:
        return self._parts.scheduler.state.info

    @property
    def limits(self) -> Limits:
        return self._settings.limits

    @property
    def previews_enabled(self) -> bool:
        return self._settings.previews

    # -- life cycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        recovery = self._store.recover_interrupted(
            self._settings.max_attempts, "the server stopped while this task was running, too many times"
        )
        if recovery.requeued:
            log.warning("re-queued %d task(s) interrupted by the last shutdown", len(recovery.requeued))
        for task_id in recovery.requeued:
            log.info("task %s waiting again: interrupted by the last shutdown", task_id, extra={"task_id": task_id})
        for task_id in recovery.failed:
            log.error("task %s failed: interrupted by too many shutdowns", task_id, extra={"task_id": task_id})
        kept = [(t.id, t.output.format) for t in self._store.unfetched_images()]
        removed = self._parts.images.remove_orphans(kept)
        if removed:
            log.info("removed %d stray file(s) from the image directory", len(removed))
        self._parts.supervisor.start()
        self._parts.housekeeper.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: the running task is abandoned at its next step and will run again after a restart."""
        self._parts.housekeeper.stop()
        self._parts.scheduler.stop_dispatching()
        self._parts.supervisor.stop(timeout)
        self._parts.scheduler.requeue_running()
        self._store.close()

    # -- submitting --------------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, caller: Caller = ANYONE) -> TaskView:
        return self.submit_all([request], caller)[0]

    def submit_all(self, requests: Sequence[GenerationRequest], caller: Caller = ANYONE) -> list[TaskView]:
        """Queue several images as one unit: all of them, or none (the first problem is raised)."""
        self._require_engine()
        limits = self.limits
        if problem := rules.count_problem(len(requests), limits):
            raise InvalidRequest({"count": [problem]})
        for request in requests:
            if problems := rules.request_problems(request, limits):
                raise InvalidRequest(problems)
        info = self.info
        news = [
            NewTask(rules.to_params(r, limits, info), OutputSpec(r.format, r.quality), r.priority, info.name,
                    caller.client)
            for r in requests
        ]  # fmt: skip
        try:
            tasks = self._store.add_all(news, Capacity(limits.max_waiting, limits.max_waiting_per_client))
        except OverCapacity as over:
            raise self._queue_full(over, caller) from None
        for task in tasks:
            self._log_submitted(task)
        # Forecast first: once dispatched to an idle engine, the task would be counted twice, as the engine's
        # current work and again as its own (a forecast of double the time).
        now = time.time()
        views = [self._waits.view(task, now) for task in tasks]
        self._parts.scheduler.dispatch()
        self._parts.changes.changed(joined_end=not any(task.priority for task in tasks))
        return views

    def _require_engine(self) -> None:
        state = self._parts.scheduler.state
        if state.load_error is not None:
            raise EngineUnavailable(state.load_error)
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
        log.info(
            "task %s waiting: %dx%d, %d steps, %s%s, prompt %s",
            task.id, params.width, params.height, params.steps, task.output.format.value,
            ", priority" if task.priority else "", shown, extra={"task_id": task.id},
        )  # fmt: skip

    # -- looking up --------------------------------------------------------------------------------------

    def task(self, task_id: str) -> Task:
        task = self._store.get(task_id) if is_task_id(task_id) else None
        if task is None:
            raise TaskNotFound(task_id)
        return task

    def status(self, task_id: str) -> TaskView:
        return self._waits.status(task_id, time.time())

    def listed(
        self, statuses: tuple[TaskStatus, ...] = tuple(TaskStatus), limit: int = 10_000, offset: int = 0
    ) -> tuple[list[TaskView], int]:
        """Tasks in queue order (running, waiting, then finished-but-unfetched), and how many there are."""
        tasks, total = self._store.listed(statuses, limit, offset)
        return self._waits.views(tasks, time.time()), total

    # -- images and previews -----------------------------------------------------------------------------

    def image(self, task_id: str, delete: bool = True) -> tuple[bytes, ImageFormat]:
        task = self.task(task_id)
        if task.status is not TaskStatus.DONE:
            reason = f"failed: {task.error}" if task.status is TaskStatus.FAILED else NOT_AVAILABLE[task.status]
            raise ImageNotAvailable(task_id, task.status.value, f"No image: task {task_id} {reason}.")
        try:
            data = self._parts.images.read(task_id, task.output.format) if task.fetched_at is None else None
        except OSError as error:  # not "no such file": the directory itself is gone or unreadable
            raise StorageUnavailable(f"The image of task {task_id} cannot be read now: {error.strerror}.") from error
        if data is None:
            # `error` on a done task says why its image went unfetched (see Housekeeper)
            gone = f"was deleted: {task.error}" if task.error else "was already fetched and deleted"
            raise ImageNotAvailable(task_id, task.status.value, f"The image of task {task_id} {gone}.")
        if delete and self._store.mark_fetched(task_id):
            self._parts.images.delete(task_id, task.output.format)
            log.info("task %s: image fetched and deleted", task_id, extra={"task_id": task_id})
        return data, task.output.format

    def preview(self, task_id: str) -> bytes | None:
        """The running task's latest preview JPEG, or None if it has none (yet)."""
        task = self.task(task_id)
        live = self._parts.table.snapshot()
        if task.status is not TaskStatus.RUNNING or live is None or live.task_id != task_id or not live.preview_count:
            return None
        try:
            return self._parts.preview_path.read_bytes()
        except FileNotFoundError:
            return None

    # -- cancelling --------------------------------------------------------------------------------------

    def cancel(self, task_id: str) -> Task:
        """Cancel a waiting task, or stop a running one at its next step; returns the task as it was."""
        before = self._store.cancel(task_id) if is_task_id(task_id) else None
        if before is None:
            raise TaskNotFound(task_id)
        self._cancelled([before])
        return before

    def clear(self) -> list[Task]:
        """Cancel every waiting and running task; returns them as they were."""
        cancelled = self._store.cancel_all()
        self._cancelled(cancelled)
        return cancelled

    def _cancelled(self, tasks: list[Task]) -> None:
        for task in tasks:
            if task.status is TaskStatus.RUNNING:
                self._parts.table.request_cancel(task.id)
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

    # -- health and metrics ------------------------------------------------------------------------------

    def health(self) -> Health:
        """ok: the worker is alive and its engine loaded or loading; otherwise `error` says why not."""
        counts = self._store.count_by_status()
        supervisor, state = self._parts.supervisor, self._parts.scheduler.state
        error = state.load_error or supervisor.halted_reason
        if error is None and not supervisor.alive:
            error = "the worker process is not running (it is being restarted, or the server is stopping)"
        return Health(
            ok=error is None,
            worker_alive=supervisor.alive,
            worker_pid=supervisor.pid,
            model_loaded=state.ready,
            engine=state.info.name,
            model=state.info.model,
            error=error,
            worker_restarts=supervisor.restarts,
            waiting=counts.get("waiting", 0),
            running=counts.get("running", 0),
        )

    def count_by_status(self) -> dict[str, int]:
        return self._store.count_by_status()

    def stored_images(self) -> tuple[int, int]:
        """How many unfetched images there are, and their bytes."""
        return self._store.stored_images()

    def counters(self) -> Iterator[Metric]:
        """The queue's counters and histograms (outcomes, durations, forecast error), for /metrics."""
        return self._parts.metrics.collect()
