"""A running task's view (progress and remaining time) through its whole life, in process: the real status
table written by hand as the worker writes it, the scheduler holding the task as it does after dispatching it.

The bug these guard against: after its last step, a task's status said 0/8 and the whole task's time again
(the old code dropped from 8/8 to 0/8 once the engine had been handed the next task but before the store
recorded the render). A client's progress bar then jumped back to the start just before the image arrived.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from core.submissions import GenerationRequest
from core.tasks import TaskStatus
from taskqueue.waits import Progress
from worker.protocol import Finished, Rendered, Started

STEPS = 8


@pytest.fixture
def running(service, parts, idle_engine):
    """A task the scheduler has dispatched (it holds the engine) and the worker has begun, plus one behind it."""
    first = service.submit(GenerationRequest("first", width=512, height=512, steps=STEPS)).task
    second = service.submit(GenerationRequest("second", width=512, height=512, steps=STEPS)).task
    assert [m.task_id for m in idle_engine.sent] == [first.id]
    assert parts.scheduler.state.task.id == first.id
    parts.table.begin(first.id, STEPS)
    parts.scheduler.on_message(Started(first.id, time.time()))
    return first, second


def view(service, task_id):
    return service.status(task_id)


def encode_seconds(parts, task) -> float:
    return parts.forecaster.encode.seconds(task.output.format.value, task.params.megapixels)


def test_steps_count_up_and_the_wait_counts_down_to_the_encode(service, parts, running):
    first, _ = running
    before_loop = view(service, first.id)
    assert before_loop.task.status is TaskStatus.RUNNING and before_loop.progress == Progress(0, STEPS)
    parts.table.loop_started(STEPS)
    waits = [before_loop.wait_remaining]
    for step in range(1, STEPS + 1):
        time.sleep(0.002)  # steps take time: the measured step time is what the remaining time is made of
        parts.table.step_done(step)
        current = view(service, first.id)
        assert current.progress == Progress(step, STEPS)
        waits.append(current.wait_remaining)
    # From the first measured step on it counts down (within a step's jitter: the steps here are ~2 ms).
    assert all(later <= earlier + 0.01 for earlier, later in itertools.pairwise(waits[1:])), waits
    assert waits[-1] > 0  # decoding and encoding are still ahead


def test_after_the_render_the_view_says_all_steps_and_only_the_encode_is_left(service, parts, running):
    first, _ = running
    parts.table.loop_started(STEPS)
    for step in range(1, STEPS + 1):
        parts.table.step_done(step)
    parts.table.rendered()
    rendered = view(service, first.id)
    assert rendered.task.status is TaskStatus.RUNNING
    assert rendered.progress == Progress(STEPS, STEPS)
    assert 0 <= rendered.wait_remaining <= encode_seconds(parts, first) + 1e-6


def test_a_task_the_engine_let_go_of_is_not_back_at_step_zero_before_the_store_records_it(
    service, parts, running, idle_engine, monkeypatch
):
    """The scheduler frees the engine first and hands it the next task, then records the render: in between,
    the store still says "running, not rendered" and the status table already holds the next task."""
    first, second = running
    parts.table.loop_started(STEPS)
    for step in range(1, STEPS + 1):
        parts.table.step_done(step)
    parts.table.rendered()
    with monkeypatch.context() as patched:
        patched.setattr(parts.store, "mark_rendered", lambda task_id, at: True)  # the record comes later
        parts.scheduler.on_message(Rendered(first.id, time.time(), 0.5, 0.05))
    assert parts.scheduler.state.task.id == second.id  # the engine has the next task
    assert idle_engine.sent[-1].task_id == second.id
    assert parts.store.get(first.id).rendered_at is None
    parts.table.begin(second.id, STEPS)  # the worker has begun it: the table no longer speaks of `first`

    released = view(service, first.id)
    assert released.task.status is TaskStatus.RUNNING
    assert released.progress == Progress(STEPS, STEPS), "a rendered task went back to the start"
    assert released.wait_remaining <= encode_seconds(parts, first) + 1e-6
    # The task behind it is now the one on the engine, at its own start.
    assert view(service, second.id).progress == Progress(0, STEPS)

    # Then the store records the render, and the image: the task is done, with nothing left to wait for.
    parts.store.mark_rendered(first.id, time.time())
    parts.changes.changed()
    assert view(service, first.id).progress == Progress(STEPS, STEPS)
    parts.scheduler.on_message(Finished(first.id, time.time(), 1234, 0.01))
    done = view(service, first.id)
    assert done.task.status is TaskStatus.DONE and done.wait_remaining == 0.0 and done.progress is None


def test_the_engine_is_never_forecast_free_sooner_than_now(service, parts, running):
    """Seconds until the engine is free cannot be negative (between the worker's render and the scheduler's
    handling of it): the task behind would be forecast ready sooner than its own work takes."""
    parts.table.loop_started(STEPS)
    for step in range(1, STEPS + 1):
        parts.table.step_done(step)
    parts.table.rendered()
    now = parts.table.snapshot().rendered_at + 0.05  # 50 ms after the render: its encoding is still under way
    assert parts.waits.engine_remaining(now) >= 0.0


def test_a_status_read_that_meets_the_worker_mid_write_does_not_go_back_to_step_zero(service, parts, running):
    first, _ = running
    parts.table.loop_started(STEPS)
    for step in range(1, 4):
        parts.table.step_done(step)
    before = view(service, first.id)
    assert before.progress == Progress(3, STEPS)
    shared = parts.table._shared
    shared.sequence += 1  # odd: the worker is between the two halves of a write (preempted there)
    try:
        during = view(service, first.id)
    finally:
        shared.sequence += 1
    assert during.progress.step >= 3, during.progress
    assert during.wait_remaining <= before.wait_remaining + 0.05


class DroppingLock:
    """The plan lock, with another thread's "plan again" (which drops the shared plan) squeezed in just as the
    lock is released: the interleaving that made GET /api/tasks answer 500 under 16 busy connections."""

    def __init__(self, waits) -> None:
        self._inner = threading.Lock()
        self._waits = waits
        self.drops = 0

    def __enter__(self) -> None:
        self._inner.acquire()

    def __exit__(self, *exc) -> None:
        self._inner.release()
        if self.drops == 0:
            self.drops += 1
            self._waits._memo.plan = None


def test_a_plan_dropped_by_another_thread_is_not_read_back_as_none(service, parts):
    queued = [service.submit(GenerationRequest(f"p{i}", width=256, height=256, steps=2)).task for i in range(3)]
    parts.waits._plan_lock = DroppingLock(parts.waits)
    parts.waits._memo.plan = None  # as after any change: the next answer plans the queue again
    views, total = service.listed()
    assert parts.waits._plan_lock.drops == 1
    assert total == 3 and [view.position for view in views] == [0, 1, 2]
    assert [view.task.id for view in views] == [task.id for task in queued]
