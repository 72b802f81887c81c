"""Who is charged an attempt when the worker dies (issue 14, item 11): only the task on the engine. A task whose
image was being encoded beside it runs again uncharged; with nothing on the engine, the encoded one is charged
(so a task that kills the worker by itself is still failed after its attempts)."""

from __future__ import annotations

import signal
import time

from core.submissions import GenerationRequest
from worker.protocol import Rendered, Started


def submit(service, prompt: str):
    return service.submit(GenerationRequest(prompt, width=256, height=256, steps=2)).task


def test_a_death_charges_the_task_on_the_engine_not_the_one_being_encoded(service, parts, idle_engine):
    encoded, on_engine = submit(service, "being encoded"), submit(service, "on the engine")
    now = time.time()
    parts.scheduler.on_message(Started(encoded.id, now))
    parts.scheduler.on_message(Rendered(encoded.id, now, 0.1))  # the engine is free: the next one starts
    parts.scheduler.on_message(Started(on_engine.id, now))
    parts.scheduler.on_worker_exit(-signal.SIGKILL, True)
    assert parts.store.get(encoded.id).attempts == 0  # runs again, uncharged
    assert parts.store.get(on_engine.id).attempts == 1  # charged: it was on the engine


def test_with_nothing_on_the_engine_the_encoded_task_is_charged(service, parts, idle_engine):
    alone = submit(service, "alone")
    now = time.time()
    parts.scheduler.on_message(Started(alone.id, now))
    parts.scheduler.on_message(Rendered(alone.id, now, 0.1))
    parts.scheduler.on_worker_exit(-signal.SIGKILL, True)
    assert parts.store.get(alone.id).attempts == 1
