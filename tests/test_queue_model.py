"""A Hypothesis state machine: the SQLite task store against a simple model of a priority queue (order, counts,
listings through submit, claim, cancel, clear, finish, requeue and crash recovery). The forecaster and the
planner have their own tests (test_forecast.py, test_planner.py)."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from core.models import Variant
from core.tasks import GenerationParams, ImageFormat, OutputSpec, TaskStatus
from taskqueue.store import NewTask, TaskStore

# -- the store against a model of the queue -----------------------------------------------------------------

SIZES = st.sampled_from([64, 256, 512, 1024])
OPEN = (TaskStatus.WAITING, TaskStatus.RUNNING)


@dataclass
class ModelTask:
    id: str
    order: int  # submission order: FIFO among equals
    priority: bool
    width: int
    height: int
    steps: int
    status: TaskStatus = TaskStatus.WAITING
    attempts: int = 0
    fetched: bool = False


class QueueMachine(RuleBasedStateMachine):
    """Every rule does the same thing to the real store and to a list of ModelTasks, and compares answers."""

    submitted = Bundle("submitted")

    @initialize()
    def open_store(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="queue-model-"))
        self.store = TaskStore(self.directory / "tasks.sqlite3")
        self.tasks: dict[str, ModelTask] = {}
        self.counter = itertools.count()

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- the model's answers -------------------------------------------------------------------------------

    def queue(self) -> list[ModelTask]:
        """Waiting tasks in the order they will run: priority first, then first come, first served."""
        waiting = [t for t in self.tasks.values() if t.status is TaskStatus.WAITING]
        return sorted(waiting, key=lambda t: (not t.priority, t.order))

    def in_state(self, *statuses: TaskStatus) -> list[ModelTask]:
        return [t for t in self.tasks.values() if t.status in statuses]

    # -- rules ---------------------------------------------------------------------------------------------

    @rule(
        target=submitted,
        batch=st.lists(
            st.tuples(st.booleans(), SIZES, SIZES, st.integers(1, 50), st.sampled_from(["a", "b"])),
            min_size=1,
            max_size=4,
        ),
    )
    def submit(self, batch: list[tuple[bool, int, int, int, str]]):
        """A few tasks at once, normal and priority mixed: the orderings worth testing need several."""
        ids = []
        for priority, width, height, steps, model in batch:
            params = GenerationParams("p", 1, width, height, steps, 3.5)
            new = NewTask(params, OutputSpec(ImageFormat.PNG), priority, "demo", Variant(model))
            task = self.store.add(new)
            assert task.variant == Variant(model)
            assert task.status is TaskStatus.WAITING and task.id not in self.tasks
            self.tasks[task.id] = ModelTask(task.id, next(self.counter), priority, width, height, steps)
            ids.append(task.id)
        return multiple(*ids)

    @rule()
    def claim_next(self) -> None:
        claimed = self.store.claim_next()
        expected = self.queue()
        if not expected:
            assert claimed is None
            return
        assert claimed is not None and claimed.id == expected[0].id, "claimed out of queue order"
        model = self.tasks[claimed.id]
        model.status, model.attempts = TaskStatus.RUNNING, model.attempts + 1
        assert claimed.status is TaskStatus.RUNNING and claimed.attempts == model.attempts

    @rule(task_id=submitted)
    def cancel(self, task_id: str) -> None:
        before = self.store.cancel(task_id)
        model = self.tasks[task_id]
        assert before is not None and before.status is model.status
        if model.status in OPEN:
            model.status = TaskStatus.CANCELLED

    @rule(task_id=st.text("0123456789abcdef", min_size=16, max_size=16))
    def cancel_unknown(self, task_id: str) -> None:
        assume(task_id not in self.tasks)
        assert self.store.cancel(task_id) is None

    @rule()
    def cancel_all(self) -> None:
        cancelled = self.store.cancel_all()
        expected = self.in_state(*OPEN)
        assert sorted(t.id for t in cancelled) == sorted(t.id for t in expected)
        for model in expected:
            model.status = TaskStatus.CANCELLED

    @rule(task_id=submitted)
    def mark_done(self, task_id: str) -> None:
        model = self.tasks[task_id]
        assert self.store.mark_done(task_id, 1.0, 100) == (model.status is TaskStatus.RUNNING)
        if model.status is TaskStatus.RUNNING:
            model.status = TaskStatus.DONE

    @rule(task_id=submitted)
    def mark_failed(self, task_id: str) -> None:
        model = self.tasks[task_id]
        assert self.store.mark_failed(task_id, 1.0, "broken") == (model.status is TaskStatus.RUNNING)
        if model.status is TaskStatus.RUNNING:
            model.status = TaskStatus.FAILED

    @rule(task_id=submitted)
    def mark_fetched(self, task_id: str) -> None:
        model = self.tasks[task_id]
        expected = model.status is TaskStatus.DONE and not model.fetched
        assert self.store.mark_fetched(task_id) == expected
        model.fetched = model.fetched or expected

    @rule(task_id=submitted, count_attempt=st.booleans())
    def requeue(self, task_id: str, count_attempt: bool) -> None:
        model = self.tasks[task_id]
        assert self.store.requeue(task_id, count_attempt=count_attempt) == (model.status is TaskStatus.RUNNING)
        if model.status is TaskStatus.RUNNING:
            model.status = TaskStatus.WAITING  # back in its old place: it keeps its submission order
            if not count_attempt:
                model.attempts = max(model.attempts - 1, 0)

    @precondition(lambda self: any(t.status is TaskStatus.RUNNING for t in self.tasks.values()))
    @rule(max_attempts=st.integers(1, 3))
    def recover_after_a_crash(self, max_attempts: int) -> None:
        recovery = self.store.recover_interrupted(max_attempts, "crashed")
        running = self.in_state(TaskStatus.RUNNING)
        assert sorted(recovery.failed) == sorted(t.id for t in running if t.attempts >= max_attempts)
        assert sorted(recovery.requeued) == sorted(t.id for t in running if t.attempts < max_attempts)
        for model in running:
            model.status = TaskStatus.FAILED if model.attempts >= max_attempts else TaskStatus.WAITING

    # -- invariants ----------------------------------------------------------------------------------------

    @invariant()
    def counts_match(self) -> None:
        if not hasattr(self, "store"):
            return
        counts = self.store.count_by_status()
        for status in TaskStatus:
            assert counts[status.value] == len(self.in_state(status)), status
        assert self.store.count_waiting() == len(self.queue())

    @invariant()
    def queue_order_and_positions_match(self) -> None:
        if not hasattr(self, "store"):
            return
        queue = self.queue()
        listed, total = self.store.listed([TaskStatus.WAITING], limit=10_000, offset=0)
        assert [t.id for t in listed] == [t.id for t in queue]
        assert total == len(queue)
        planned = list(self.store.queue())
        assert [q.id for q in planned] == [t.id for t in queue]
        assert [(q.steps, q.attempts) for q in planned] == [(t.steps, t.attempts) for t in queue]

    @invariant()
    def listing_is_running_then_waiting_then_finished(self) -> None:
        if not hasattr(self, "store"):
            return
        listed, total = self.store.listed(tuple(TaskStatus), limit=10_000, offset=0)
        shown = [t for t in self.tasks.values() if not (t.status is TaskStatus.DONE and t.fetched)]
        rank = {TaskStatus.RUNNING: 0, TaskStatus.WAITING: 1}
        expected = sorted(shown, key=lambda t: (rank.get(t.status, 2), not t.priority, t.order))
        assert [t.id for t in listed] == [t.id for t in expected]
        assert total == len(expected)
        assert sorted(t.id for t in self.store.running()) == sorted(t.id for t in self.in_state(TaskStatus.RUNNING))


QueueMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_the_store_behaves_like_a_priority_queue = QueueMachine.TestCase
