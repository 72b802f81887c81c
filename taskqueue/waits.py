"""How long each task will wait: the store's queue, the forecaster's cost model and the engine's live progress,
composed into `TaskView`s. The one place that turns "what is queued" into "when will it be ready"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import TaskNotFound
from core.progress import LiveProgress
from core.tasks import Task, TaskStatus, is_task_id
from taskqueue.changes import ChangeFeed
from taskqueue.forecast import Forecaster, Workload, remaining_seconds
from taskqueue.scheduler import EngineState
from taskqueue.store import TaskStore

MEMO_SIZE = 10_000  # most tasks' status answers memoized per version of the change feed


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


class WaitTimes:
    def __init__(
        self,
        store: TaskStore,
        forecaster: Forecaster,
        changes: ChangeFeed,
        engine: Callable[[], EngineState],
        live: Callable[[], LiveProgress | None],
    ) -> None:
        self._store = store
        self._forecaster = forecaster
        self._changes = changes
        self._engine = engine
        self._live = live
        self._memo = _StoreMemo(-1)

    def status(self, task_id: str, now: float) -> TaskView:
        """What every waiting client polls, many times a second: answered from a memo of what the store held at
        the current version of the change feed, so polling an unchanged queue costs no query."""
        # Read before the store: a change after this empties the memo. A task joining the end of the queue
        # changes no other task's answer (see ChangeFeed.others_version); a new task is not in the memo yet.
        version = self._changes.others_version
        memo = self._memo
        if memo.version != version:
            memo = self._memo = _StoreMemo(version)
        found = memo.tasks.get(task_id)
        if found is None:
            task = self._store.get(task_id) if is_task_id(task_id) else None
            if task is None:
                raise TaskNotFound(task_id)
            found = memo.remember(task, self._store.ahead_of(task) if task.status is TaskStatus.WAITING else None)
        task, ahead = found
        if ahead is not None:
            return self.waiting_views([task], now, ahead)[0]
        return self.settled_view(task, now)

    def view(self, task: Task, now: float) -> TaskView:
        if task.status is TaskStatus.WAITING:
            return self.waiting_views([task], now)[0]
        return self.settled_view(task, now)

    def views(self, tasks: list[Task], now: float) -> list[TaskView]:
        """Views of tasks listed in queue order; the waiting ones' work ahead is summed once."""
        waiting = self.waiting_views([t for t in tasks if t.status is TaskStatus.WAITING], now)
        by_id = {v.task.id: v for v in waiting}
        return [by_id.get(t.id) or self.settled_view(t, now) for t in tasks]

    def settled_view(self, task: Task, now: float) -> TaskView:
        """A task that is on the engine, being encoded, or finished."""
        if task.status is not TaskStatus.RUNNING:
            return TaskView(task, None, 0, 0.0, None)
        encode = self._forecaster.encode.seconds(task.output.format.value, task.params.megapixels)
        live = self._live()
        live = live if live is not None and live.task_id == task.id else None
        engine_task = self._engine().task
        # The scheduler lets go of a rendered task before the store records it (and a memoized task may predate
        # that record): a started task the engine no longer holds is rendered, not back at step 0.
        released = task.started_at is not None and (engine_task is None or engine_task.id != task.id)
        rendered_at = task.rendered_at or (live.rendered_at if live else None) or (now if released else None)
        done = Progress(task.params.steps, task.params.steps)
        if rendered_at is not None:
            return TaskView(task, 0, 0, max(encode - (now - rendered_at), 0.0), done)
        progress = Progress(live.steps_done, live.steps) if live else Progress(0, task.params.steps)
        work = Workload.of(task.params.width, task.params.height, task.params.steps)
        remaining = remaining_seconds(self._forecaster.model, work, live, now)
        return TaskView(task, 0, 0, remaining + encode, progress, live.preview_count if live else 0)

    def waiting_views(self, tasks: list[Task], now: float, ahead: Workload | None = None) -> list[TaskView]:
        """Waiting tasks in queue order; the work ahead of each is summed once (unless given), then carried forward."""
        if not tasks:
            return []
        model = self._forecaster.model
        engine_busy = self._engine().task is not None
        engine_left = self.engine_remaining(now)
        ahead = self._store.ahead_of(tasks[0]) if ahead is None else ahead
        views = []
        for task in tasks:
            own = Workload.of(task.params.width, task.params.height, task.params.steps)
            encode = self._forecaster.encode.seconds(task.output.format.value, own.megapixels)
            wait = engine_left + model.seconds(ahead + own) + encode
            count = int(ahead.tasks)
            views.append(TaskView(task, count, count + engine_busy, wait, None))
            ahead = ahead + own
        return views

    def engine_remaining(self, now: float) -> float:
        """Seconds until the engine is free for the next task."""
        task = self._engine().task  # every status poll of a waiting task comes here: no store read
        if task is None:
            return 0.0
        encode = self._forecaster.encode.seconds(task.output.format.value, task.params.megapixels)
        return self.settled_view(task, now).wait_remaining - encode


@dataclass
class _StoreMemo:
    """Tasks, and the work queued ahead of each waiting one, as the store held them at one `others_version` of
    the change feed. Every change that could alter a memoized answer bumps it, so a memo of the current version
    is exact; a new version starts a new memo. Live progress is never memoized."""

    version: int
    tasks: dict[str, tuple[Task, Workload | None]] = field(default_factory=dict)

    def remember(self, task: Task, ahead: Workload | None) -> tuple[Task, Workload | None]:
        if len(self.tasks) < MEMO_SIZE:
            self.tasks[task.id] = (task, ahead)
        return task, ahead
