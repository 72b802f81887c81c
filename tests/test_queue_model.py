"""Hypothesis tests of the queue's two pure cores: the SQLite task store against a simple model of a priority
queue (order, positions, counts through submit, claim, cancel, clear, finish and requeue), and the forecaster
(non-negative, monotone, accurate on exact data, a countdown that never goes below zero)."""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
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

from core.progress import LiveProgress
from core.tasks import GenerationParams, ImageFormat, OutputSpec, TaskStatus
from taskqueue.forecast import CostModel, Observation, Workload, fit, remaining_seconds
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

    @property
    def work(self) -> Workload:
        return Workload.of(self.width, self.height, self.steps)


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
        batch=st.lists(st.tuples(st.booleans(), SIZES, SIZES, st.integers(1, 50)), min_size=1, max_size=4),
    )
    def submit(self, batch: list[tuple[bool, int, int, int]]):
        """A few tasks at once, normal and priority mixed: the orderings worth testing need several."""
        ids = []
        for priority, width, height, steps in batch:
            params = GenerationParams("p", 1, width, height, steps, 3.5)
            task = self.store.add(NewTask(params, OutputSpec(ImageFormat.PNG), priority, "demo"))
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
        ahead = Workload()
        for position, (task, model) in enumerate(zip(listed, queue, strict=True)):
            summed = self.store.ahead_of(task)
            assert summed.tasks == position, "ahead_of counts the wrong tasks"
            for got, want in zip(summed.vector(), ahead.vector(), strict=True):
                assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
            ahead = ahead + model.work
        for priority in (False, True):
            expected = sum(1 for t in queue if t.priority or not priority)
            assert self.store.waiting_workload(priority).tasks == expected

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


# -- the forecaster ----------------------------------------------------------------------------------------

POSITIVE = st.floats(1e-3, 10.0)
OBSERVATION = st.builds(
    Observation, megapixels=st.floats(0.004, 6.0), steps=st.integers(1, 100), seconds=st.floats(1e-3, 1e4)
)
COST_MODEL = st.builds(CostModel, POSITIVE, POSITIVE, POSITIVE, POSITIVE, POSITIVE)
PRIOR = st.builds(CostModel.prior, st.floats(0.01, 100.0))


@given(observations=st.lists(OBSERVATION, max_size=40), prior=st.one_of(PRIOR, COST_MODEL))
@settings(max_examples=200, deadline=None)
def test_fit_never_returns_a_negative_coefficient(observations, prior):
    model = fit(observations, prior)
    assert all(c >= 0 and math.isfinite(c) for c in model.coefficients()), model


@given(
    observations=st.lists(OBSERVATION, max_size=30),
    prior=PRIOR,
    sizes=st.lists(st.floats(0.004, 8.0), min_size=2, max_size=2),
    steps=st.lists(st.integers(1, 100), min_size=2, max_size=2),
)
@settings(max_examples=200, deadline=None)
def test_predictions_grow_with_pixels_and_with_steps(observations, prior, sizes, steps):
    model = fit(observations, prior)
    small, large = sorted(sizes)
    few, many = sorted(steps)
    seconds = lambda mp, n: model.seconds(Workload.from_megapixels(mp, n))  # noqa: E731
    assert seconds(small, few) <= seconds(large, few) * (1 + 1e-12)
    assert seconds(small, few) <= seconds(small, many) * (1 + 1e-12)
    assert seconds(small, few) <= seconds(large, many) * (1 + 1e-12)


# Sizes a server sees: from thumbnails to the largest FLUX images, 1 to 50 steps.
TRAINING_GRID = [(mp, n) for mp in (0.06, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0) for n in (1, 2, 4, 8, 20, 50)]


@given(truth=COST_MODEL, prior=PRIOR, probe_mp=st.floats(0.06, 4.0), probe_steps=st.integers(1, 50))
@settings(max_examples=150, deadline=None)
def test_fitting_exact_data_recovers_the_true_predictions(truth, prior, probe_mp, probe_steps):
    """Learning from a history the true cost model produced exactly, the forecast is right within a few per
    cent anywhere inside the range it has seen, whatever the prior guessed (only its shape is trusted)."""
    observations = [Observation(mp, n, truth.seconds(Workload.from_megapixels(mp, n))) for mp, n in TRAINING_GRID]
    model = fit(observations * 3, prior)  # a history of 126 tasks, as after a few hours of use
    for mp, n in [(probe_mp, probe_steps), *TRAINING_GRID[::7]]:
        work = Workload.from_megapixels(mp, n)
        assert model.seconds(work) == pytest.approx(truth.seconds(work), rel=0.05), (mp, n)


@given(
    model=COST_MODEL,
    mp=st.floats(0.01, 4.0),
    steps=st.integers(1, 60),
    timeline=st.lists(st.floats(0.0, 30.0), min_size=3, max_size=70),
    probes=st.lists(st.floats(-5.0, 100.0), min_size=1, max_size=5),
)
@settings(max_examples=300, deadline=None)
def test_remaining_seconds_is_never_negative(model, mp, steps, timeline, probes):
    """Whatever the engine does (any step durations, any moment we ask, even a clock that went backwards)."""
    work = Workload.from_megapixels(mp, steps)
    started = 1000.0
    loop_started = started + timeline[0]
    done_times = list(itertools.accumulate(timeline[1 : steps + 1], initial=loop_started))[1:]
    states = [LiveProgress("t", started, steps, 0), LiveProgress("t", started, steps, 0, loop_started)]
    states += [LiveProgress("t", started, steps, k, loop_started, at) for k, at in enumerate(done_times, start=1)]
    assert remaining_seconds(model, work, None, started) >= 0
    for live in states:
        for offset in probes:
            assert remaining_seconds(model, work, live, (live.last_step_at or started) + offset) >= 0


def _is_non_increasing(values: list[float]) -> bool:
    return all(later <= earlier * (1 + 1e-9) + 1e-9 for earlier, later in itertools.pairwise(values))


def _countdown(model: CostModel, mp: float, steps: int, slowness: float) -> tuple[list[float], list[float]]:
    """remaining_seconds through a task on a steady engine `slowness` times slower than the model: before the
    loop and before its first step, then at, between and just before each later step."""
    work = Workload.from_megapixels(mp, steps)
    step = model.step_seconds(mp) * slowness
    started = 1000.0
    loop_started = started + model.fixed * slowness
    early = [
        remaining_seconds(model, work, LiveProgress("t", started, steps, 0), now) for now in (started, loop_started)
    ]
    live = LiveProgress("t", started, steps, 0, loop_started)
    early += [remaining_seconds(model, work, live, now) for now in (loop_started, loop_started + step / 2)]
    measured = []
    for k in range(1, steps + 1):
        at = loop_started + k * step
        live = LiveProgress("t", started, steps, k, loop_started, at)
        measured += [remaining_seconds(model, work, live, now) for now in (at, at + step / 2, at + step * 0.999)]
    return early, measured


@given(model=COST_MODEL, mp=st.floats(0.01, 4.0), steps=st.integers(1, 60), slowness=st.floats(0.2, 5.0))
@settings(max_examples=300, deadline=None)
def test_remaining_seconds_counts_down_once_steps_are_measured(model, mp, steps, slowness):
    """On a steady engine, from the first measured step on, the countdown never goes up, whatever its speed
    (before that it is the model's guess, and a slower engine than modelled rightly raises it)."""
    _, measured = _countdown(model, mp, steps, slowness)
    assert _is_non_increasing(measured) and min(measured) >= 0


@given(model=COST_MODEL, mp=st.floats(0.01, 4.0), steps=st.integers(1, 60))
@settings(max_examples=200, deadline=None)
def test_an_engine_running_as_modelled_counts_down_from_the_start(model, mp, steps):
    early, measured = _countdown(model, mp, steps, 1.0)
    assert _is_non_increasing(early + measured)
