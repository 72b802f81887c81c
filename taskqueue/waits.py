"""How long each task will wait: the planner's plan of the queue, the forecaster's costs and the worker's live
progress, composed into `TaskView`s. The one place that turns "what is queued" into "when will it be ready".

A plan is made per version of the change feed (any change that could move a task bumps it) and kept: polling an
unchanged queue costs no query and no planning. Its times are offsets from the moment the worker is free, so
they stay right while the running task's live progress moves that moment. A task that joins the queue is put
into the plan by its own view, made as it is submitted: at the end of the plan (a normal task), or behind the
priority tasks with everyone behind it moved by its time (a priority task), without planning again when that
is where a new plan would put it (`planner.extend`); otherwise the plan is made again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import TaskNotFound
from core.progress import LiveProgress
from core.tasks import Task, TaskStatus, is_task_id
from taskqueue.changes import ChangeFeed
from taskqueue.forecast import LOCAL, Forecaster, remaining_seconds
from taskqueue.planner import Costs, Fairness, Lane, Plan, Queued, extend, plan
from taskqueue.scheduler import WorkerState
from taskqueue.store import TaskStore

MEMO_SIZE = 10_000  # most tasks memoized per version of the change feed


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
    loading: str | None = None  # the variant being loaded for it (running), or to be loaded before it (waiting)
    anonymous: bool = False  # another key's task, shown to a user key as a queue entry only (TaskService decides)


class ForecastCosts(Costs):
    """The planner's view of the forecaster."""

    def __init__(self, forecaster: Forecaster) -> None:
        self._forecaster = forecaster

    def task_seconds(self, task: Queued, cached: bool, first_after_load: bool, lane: str = LOCAL) -> float:
        return self._forecaster.task_seconds(task.cost_key, task.megapixels, task.steps, cached, first_after_load,
                                             lane)  # fmt: skip

    def load_seconds(self, variant: str, cost_key: str, lane: str = LOCAL) -> float:
        return self._forecaster.load_seconds(cost_key, lane)


class WaitTimes:
    def __init__(
        self,
        store: TaskStore,
        forecaster: Forecaster,
        changes: ChangeFeed,
        workers: Callable[[], list[WorkerState]],
        live: Callable[[str], LiveProgress | None],
        fairness: Fairness,
        max_loaded: int,
    ) -> None:
        self._store = store
        self._forecaster = forecaster
        self._costs = ForecastCosts(forecaster)
        self._changes = changes
        self._workers = workers
        self._live = live
        self._fairness = fairness
        self._max_loaded = max_loaded
        self._memo = _Memo(-1)
        self._plan_lock = threading.Lock()

    # -- answers -----------------------------------------------------------------------------------------

    def status(self, task_id: str, now: float) -> TaskView:
        """What every waiting client polls, many times a second: answered from a memo of the store and a plan,
        both kept per version of the change feed."""
        memo = self._current_memo()
        task = memo.tasks.get(task_id)
        if task is None:
            task = self._store.get(task_id) if is_task_id(task_id) else None
            if task is None:
                raise TaskNotFound(task_id)
            memo.remember(task)
        return self.view(task, now, memo)

    def view(self, task: Task, now: float, memo: _Memo | None = None, workers: _Workers | None = None) -> TaskView:
        if task.status is TaskStatus.WAITING:
            return self._waiting_view(task, now, memo or self._current_memo(), workers or self._at(now))
        return self.settled_view(task, now)

    def views(self, tasks: list[Task], now: float) -> list[TaskView]:
        """Views at one moment: the memo, and when each worker is free, read once for a whole page."""
        memo, workers = self._current_memo(), self._at(now)
        return [self.view(task, now, memo, workers) for task in tasks]

    def _at(self, now: float) -> _Workers:
        return _Workers(self._workers(), self.engine_remaining, now)

    def engine_remaining(self, now: float, worker: WorkerState | None = None) -> float:
        """Seconds until a worker can start another task (the one it holds, and its load); without `worker`, the
        first of them to be free."""
        if worker is None:
            return self._at(now).first_free_in()
        task = worker.task  # every status poll of a waiting task comes here: no store read
        if task is None:
            return self._loading_left(worker, None, now)
        encode = self._forecaster.encode.seconds(task.output.format.value, task.params.megapixels)
        # Rendered but not yet released by the scheduler: its encoding is under way, the engine already free.
        return max(self._running_view(task, worker, now).wait_remaining - encode, 0.0)

    # -- waiting tasks -----------------------------------------------------------------------------------

    def _waiting_view(self, task: Task, now: float, memo: _Memo, workers: _Workers) -> TaskView:
        # Threads share the memo: each reads `memo.plan` once into a local, and only changes it under the lock
        # (another thread may drop it at any moment, and a plan read twice may be None the second time).
        planned = self._plan(memo).get(task.id)
        if planned is None:  # it joined the end of the queue after the plan was made
            with self._plan_lock:
                current = memo.plan
                joined = [*self._store.queue(memo.max_priority_seq, priority=True),
                          *self._store.queue(memo.max_seq)]  # fmt: skip
                if current is not None and extend(current, joined, self._costs):
                    memo.max_seq = max((q.seq for q in joined if not q.priority), default=memo.max_seq)
                    memo.max_priority_seq = max((q.seq for q in joined if q.priority), default=memo.max_priority_seq)
                else:  # one of them may go ahead of others (grouping by model): the plan changes
                    current = memo.plan = None
            planned = current.get(task.id) if current is not None else None
        if planned is None:  # not waiting any more, or a plan that missed it: plan again
            with self._plan_lock:
                memo.plan = None
            planned = self._plan(memo).get(task.id)
        encode = self._forecaster.encode.seconds(task.output.format.value, task.params.megapixels)
        if planned is None:
            return TaskView(task, 0, workers.busy, workers.first_free_in() + encode, None)
        wait = workers.free_in(planned.lane) + planned.end + encode
        loading = task.variant.key if planned.switch else None
        return TaskView(task, planned.position, planned.position + workers.busy, wait, None, loading=loading)

    def _plan(self, memo: _Memo) -> Plan:
        current = memo.plan
        if current is None:
            with self._plan_lock:
                current = memo.plan
                if current is None:
                    now = time.time()
                    lanes = [self._lane(state, now) for state in self._workers()]
                    queue = list(self._store.queue())
                    memo.max_seq = max((q.seq for q in queue if not q.priority), default=0)
                    memo.max_priority_seq = max((q.seq for q in queue if q.priority), default=0)
                    current = memo.plan = plan(queue, lanes, self._costs, self._fairness)
        return current

    def _lane(self, state: WorkerState, now: float) -> Lane:
        warm, fresh = state.warm, state.fresh
        if state.loading:  # a load under way is as good as done for the plan; one ahead of a task
            warm += (state.loading[0],)  # leaves its first image to warm up
            if state.task is None or state.task.variant.key != state.loading[0]:
                fresh |= {state.loading[0]}
        return Lane(state.name, warm, self._max_loaded, free_in=self.engine_remaining(now, state), busy=state.busy,
                    prompts=state.prompts, fresh=fresh, available=state.available, models=state.models)  # fmt: skip

    # -- running and finished tasks ----------------------------------------------------------------------

    def settled_view(self, task: Task, now: float) -> TaskView:
        """A task that is on an engine (or being loaded for), being encoded, or finished."""
        if task.status is not TaskStatus.RUNNING:
            return TaskView(task, None, 0, 0.0, None)
        worker = next((state for state in self._workers() if state.name == task.worker), None)
        if worker is None:  # claimed before workers had names, or its worker has just gone
            worker = WorkerState(task.worker or LOCAL)
        return self._running_view(task, worker, now)

    def _running_view(self, task: Task, worker: WorkerState, now: float) -> TaskView:
        params = task.params
        encode = self._forecaster.encode.seconds(task.output.format.value, params.megapixels)
        live = self._live(worker.name)
        live = live if live is not None and live.task_id == task.id else None
        engine_task = worker.task
        # The scheduler lets go of a rendered task before the store records it (and a memoized task may predate
        # that record): a started task the engine no longer holds is rendered, not back at step 0.
        released = task.started_at is not None and (engine_task is None or engine_task.id != task.id)
        rendered_at = task.rendered_at or (live.rendered_at if live else None) or (now if released else None)
        done = Progress(params.steps_run, params.steps_run)
        if rendered_at is not None:
            return TaskView(task, 0, 0, max(encode - (now - rendered_at), 0.0), done)
        costs = self._forecaster.costs(task.variant.cost_key, worker.name)
        loading = worker.loading[0] if worker.loading and worker.loading[0] == task.variant.key else None
        held = engine_task is not None and engine_task.id == task.id
        first = loading is not None or (held and worker.task_first)
        cached = held and worker.task_cached and loading is None
        progress = Progress(live.steps_done, live.steps) if live else Progress(0, params.steps_run)
        remaining = remaining_seconds(costs, params.work_megapixels, params.steps_run, cached, first, live, now)
        remaining += self._loading_left(worker, task, now)
        return TaskView(task, 0, 0, remaining + encode, progress, live.preview_count if live else 0, loading)

    def _loading_left(self, worker: WorkerState, task: Task | None, now: float) -> float:
        """Seconds left of the load a worker is doing (for `task`, or for whatever it loads when idle)."""
        loading = worker.loading
        if loading is None or (task is not None and loading[0] != task.variant.key):
            return 0.0
        key = task.variant.cost_key if task is not None else loading[0].split("+", 1)[0]
        return max(self._forecaster.load_seconds(key, worker.name) - (now - loading[1]), 0.0)

    def _current_memo(self) -> _Memo:
        # Read before the store: a change after this empties the memo. A task joining the end of the queue
        # changes no other task's answer (see ChangeFeed.others_version); a new task is not in the memo yet.
        version = self._changes.others_version
        memo = self._memo
        if memo.version != version:
            memo = self._memo = _Memo(version)
        return memo


class _Workers:
    """The workers at one moment, and (asked for) when each is free: what every waiting task's view adds to its
    place in the plan, worked out once however many views are made then."""

    def __init__(self, states: list[WorkerState], engine_remaining: Callable[[float, WorkerState], float],
                 now: float) -> None:  # fmt: skip
        self._engine_remaining = engine_remaining
        self._now = now
        self.states = {state.name: state for state in states}
        self.busy = sum(1 for state in self.states.values() if state.busy)
        self._free_in: dict[str | None, float] = {}

    def free_in(self, name: str) -> float:
        """Seconds until this worker can start another task (0 for one that has gone)."""
        if name not in self._free_in:
            state = self.states.get(name)
            self._free_in[name] = 0.0 if state is None else self._engine_remaining(self._now, state)
        return self._free_in[name]

    def first_free_in(self) -> float:
        if None not in self._free_in:
            available = [name for name, state in self.states.items() if state.available]
            self._free_in[None] = min((self.free_in(name) for name in available), default=0.0)
        return self._free_in[None]


@dataclass
class _Memo:
    """Tasks as the store held them at one `others_version` of the change feed, and the plan made then. Every
    change that could alter a memoized answer bumps the version, so a memo of the current version is exact;
    live progress is never memoized."""

    version: int
    tasks: dict[str, Task] = field(default_factory=dict)
    plan: Plan | None = None
    max_seq: int = 0  # the newest normal task the plan holds
    max_priority_seq: int = 0  # ... and priority task

    def remember(self, task: Task) -> None:
        if len(self.tasks) < MEMO_SIZE:
            self.tasks[task.id] = task
