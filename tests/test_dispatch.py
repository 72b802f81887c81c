"""The scheduler with several workers, in process: which worker gets which task (the most senior task first, to a
worker with its model warm, else the one that finishes it soonest), a worker's speed learned apart, and a
message about a task from a worker it does not run on ignored."""

from __future__ import annotations

import time

from core.submissions import GenerationRequest
from taskqueue.forecast import Timing
from tests.conftest import RecordingSink
from worker.protocol import Finished, Loaded, Preload, Ready, Rendered, Started, Submit


def worker(parts, name: str, *warm: str, models=None) -> RecordingSink:
    sink = RecordingSink()
    parts.scheduler.attach(sink, name, remote=name != "local", models=models)
    parts.scheduler.on_message(Ready("demo"), name)
    for variant in warm:
        parts.scheduler.on_message(Loaded(variant, 0.1), name)
    sink.sent[:] = [m for m in sink.sent if not isinstance(m, Preload)]  # the default model's, at Ready
    return sink


def submitted(sink: RecordingSink) -> list[str]:
    return [m.task_id for m in sink.sent if isinstance(m, Submit)]


def test_a_task_goes_to_the_worker_that_has_its_model_warm(service, parts):
    fast = worker(parts, "fast-box", "demo-fast")
    plain = worker(parts, "plain-box", "demo")
    on_fast = service.submit(GenerationRequest("f", model="demo-fast", width=256, height=256, steps=2)).task
    on_plain = service.submit(GenerationRequest("p", width=256, height=256, steps=2)).task
    assert submitted(fast) == [on_fast.id] and submitted(plain) == [on_plain.id]
    assert parts.store.get(on_fast.id).worker == "fast-box" and parts.store.get(on_plain.id).worker == "plain-box"


def test_a_cold_model_goes_to_the_worker_that_finishes_it_soonest(service, parts):
    air, ultra = worker(parts, "air"), worker(parts, "ultra")
    for name, seconds in (("air", 3.0), ("ultra", 1.0)):  # the Air has been three times as slow on demo
        for _ in range(3):
            parts.forecaster.record(Timing("demo", 1.0, 4, 0.1, 4 * seconds, 0.1, worker=name))
    assert parts.forecaster.task_seconds("demo", 1.0, 4, False, False, "air") > parts.forecaster.task_seconds(
        "demo", 1.0, 4, False, False, "ultra")  # fmt: skip
    first = service.submit(GenerationRequest("one", width=512, height=512, steps=4)).task
    second = service.submit(GenerationRequest("two", width=512, height=512, steps=4)).task
    assert submitted(ultra) == [first.id] and submitted(air) == [second.id]  # the senior task to the faster one
    # A model neither has run: borrowed from the other worker at this worker's own relative speed.
    assert parts.forecaster.costs("demo-slow", "air").step_seconds(1.0) > parts.forecaster.costs(
        "demo-slow", "ultra").step_seconds(1.0)  # fmt: skip


def test_a_worker_takes_only_the_models_it_can_run(service, parts):
    only_fast = worker(parts, "small-mac", models=frozenset({"demo-fast"}))
    task = service.submit(GenerationRequest("p", width=256, height=256, steps=2)).task  # "demo": not its
    assert submitted(only_fast) == []
    assert parts.store.get(task.id).status.value == "waiting"
    anything = worker(parts, "big-mac")
    assert submitted(anything) == [task.id]


def test_a_message_from_another_worker_about_a_task_is_ignored(service, parts):
    mine = worker(parts, "mine", "demo")
    other = worker(parts, "other", "demo-fast")
    task = service.submit(GenerationRequest("p", width=256, height=256, steps=2)).task
    assert submitted(mine) == [task.id]
    now = time.time()
    parts.scheduler.on_message(Started(task.id, now), "other")
    parts.scheduler.on_message(Rendered(task.id, now, 0.1), "other")
    parts.scheduler.on_message(Finished(task.id, now, 100, 0.01), "other")
    assert parts.store.get(task.id).status.value == "running"  # still mine to finish
    assert parts.scheduler.worker("mine").task.id == task.id and other.sent == []
