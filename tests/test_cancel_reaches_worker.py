"""Cancelling a running task stops the engine, not just the record: against the real server and worker.

A cancel that only marks the task cancelled in the store would leave the engine grinding through the rest of
its steps (minutes, on a real model) while the queue behind it waits. So these tests time what happens next:
the task queued behind must start within about a step of the cancel, long before the cancelled task could
have finished, and the worker must report it abandoned the task mid-generation.
"""

from __future__ import annotations

import time

import pytest
import requests

from harness.server_process import RunningServer, wait_for

# At demo speed 4, a 1024² step takes ~0.5 s: 100 steps are ~50 s of engine time.
LONG = {"prompt": "a long task to cancel", "width": 1024, "height": 1024, "steps": 100}
NEXT = {"prompt": "the task behind it", "width": 64, "height": 64, "steps": 1}


def step_of(server: RunningServer, task_id: str) -> tuple[float, int]:
    status = server.status(task_id)
    progress = status.get("progress") or {}
    return time.time(), progress.get("step", 0) if status["status"] == "running" else 0


def measured_step_seconds(server: RunningServer, task_id: str) -> tuple[float, int]:
    """The engine's seconds per step, timed from the outside over a few steps; and the step reached."""
    first_at, first = wait_for(
        lambda: (s := step_of(server, task_id))[1] >= 1 and s, 60, interval=0.01, what="the first step"
    )
    last_at, last = wait_for(
        lambda: (s := step_of(server, task_id))[1] >= first + 3 and s, 60, interval=0.01, what="three more steps"
    )
    return (last_at - first_at) / (last - first), last


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/cancel"), ("DELETE", "/api/cancel"), ("GET", "/api/clear")])
def test_cancelling_a_running_task_frees_the_engine_within_a_step(server_factory, method, path):
    server = server_factory("--no-previews", demo_speed=4)
    long_id = server.generate(**LONG)
    step_seconds, reached = measured_step_seconds(server, long_id)
    clearing = path == "/api/clear"
    next_id = None if clearing else server.generate(**NEXT)  # /api/clear would cancel it too: queued after that
    assert next_id is None or server.status(next_id)["status"] == "waiting"

    cancelled_at = time.time()
    answer = requests.request(method, server.url + path, params={"task_id": long_id}, timeout=10)
    assert answer.status_code == 200, answer.text
    next_id = next_id or server.generate(**NEXT)
    # What the engine would still need for the cancelled task's remaining steps, had it gone on.
    left_if_ignored = (LONG["steps"] - reached - 1) * step_seconds
    # Within about a step: the engine checks for a cancel between steps. Plus the scheduler's round trip and
    # some slack for a loaded machine; still a small fraction of what ignoring the cancel would take.
    bound = 2 * step_seconds + 3.0
    assert bound < left_if_ignored / 5, (bound, left_if_ignored)

    started = wait_for(
        lambda: (t := task(server, next_id))["compute_time"] is not None and t,
        bound,
        interval=0.02,
        what="the next task to start after the cancel",
    )
    assert started["compute_time"] - cancelled_at < bound
    server.wait_status(next_id, "done", timeout=30)

    # The worker said it stopped the task mid-generation: the cancel reached it, the engine did not just end.
    server.wait_for_log(rf"task {long_id} stopped mid-generation", timeout=5)
    cancelled = task(server, long_id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["render_end_time"] is None  # it never finished rendering
    assert cancelled["progress"] is None
    assert not list((server.data_dir / "images").glob(f"{long_id}.*"))
    assert server.get("/api/image", params={"task_id": long_id}).json()["task_status"] == "cancelled"
    assert server.get("/api/health").json()["worker_restarts"] == 0  # stopped, not killed


def task(server: RunningServer, task_id: str) -> dict:
    listed = server.get("/api/tasks", params={"status": ["waiting", "running", "done", "cancelled"]}).json()
    return next(t for t in listed if t["task_id"] == task_id)
