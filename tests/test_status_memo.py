"""Status answers are memoized per change of the queue; no change may be missed, whatever the interleaving."""

from __future__ import annotations

import pytest

from core.submissions import GenerationRequest


def test_submissions_at_the_end_keep_the_memo_and_real_changes_replace_it(service, parts):
    first = service.submit(GenerationRequest("first", width=256, height=256)).task
    assert service.status(first.id).position == 0
    version = parts.changes.others_version

    second = service.submit(GenerationRequest("second", width=256, height=256)).task
    assert parts.changes.others_version == version  # nothing memoized about `first` changed
    assert service.status(second.id).position == 1

    urgent = service.submit(GenerationRequest("urgent", width=256, height=256, priority=True)).task
    assert service.status(urgent.id).position == 0
    assert service.status(first.id).position == 1  # a priority task is a change for everyone behind it

    service.cancel(first.id)
    assert service.status(first.id).task.status.value == "cancelled"
    assert service.status(second.id).position == 1


def test_a_change_made_while_a_submission_is_being_recorded_is_not_hidden(service, parts):
    """The feed once counted "submissions at the end" apart and subtracted them; a status read between the
    two counters, then a real change, could bring a stale memo back for good."""
    waiting = service.submit(GenerationRequest("waiting", width=256, height=256)).task
    changes = parts.changes
    real_changed = changes.changed

    def changed(**kwargs: bool) -> None:
        real_changed(**kwargs)
        service.status(waiting.id)  # a poll landing in the middle of the submission

    changes.changed = changed
    service.submit(GenerationRequest("another", width=256, height=256))
    changes.changed = real_changed
    service.cancel(waiting.id)
    assert service.status(waiting.id).task.status.value == "cancelled"


def test_a_priority_task_joins_the_plan_of_a_long_queue_without_planning_it_again(service, idle_engine, monkeypatch):
    """At 10,000 waiting a plan takes a tenth of a second: a priority submission once planned everything again
    (twice: for its own answer, then for the next poll), so one in twenty submissions was that slow."""
    import taskqueue.waits as waits

    service.submit(GenerationRequest("on the engine", width=256, height=256))
    tasks = [service.submit(GenerationRequest(f"normal {i}", width=256, height=256)).task for i in range(6)]
    before = [service.status(task.id) for task in tasks]
    plans = []
    monkeypatch.setattr(waits, "plan", lambda *args: plans.append(args) or pytest.fail("planned again"))

    urgent = service.submit(GenerationRequest("urgent", width=256, height=256, priority=True))
    after = [service.status(task.id) for task in tasks]

    assert urgent.position == 0 and service.status(urgent.task.id).position == 0
    assert [view.position for view in after] == [view.position + 1 for view in before]
    took = urgent.wait_remaining - before[0].wait_remaining  # it goes where the first normal task was
    assert all(abs(a.wait_remaining - b.wait_remaining - took) < 0.5 for a, b in zip(after, before, strict=True))
    assert not plans
