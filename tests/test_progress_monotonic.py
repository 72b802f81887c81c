"""What a polling client sees over a task's whole life never goes backwards: against the real server.

Clients draw progress bars and countdowns from /api/status. Polled as fast as a client can, through the whole
life of several tasks of a few sizes: the step never decreases while running, the status only moves forward
(waiting → running → done), and once the task runs and has measured steps the remaining time counts down,
give or take honest corrections. The bug this guards against: after the last step the status went from 8/8
back to 0/8 and the remaining time back to the whole task's, just before the image arrived.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from harness.server_process import RunningServer

# At demo speed 5: ~0.1 s to 1.6 s of engine time each; about 4 s for all four, one after the other.
TASKS = [
    {"width": 512, "height": 512, "steps": 8},
    {"width": 768, "height": 768, "steps": 6},
    {"width": 1024, "height": 1024, "steps": 4, "format": "PNG"},
    {"width": 256, "height": 256, "steps": 5, "format": "WEBP"},
    {"width": 640, "height": 384, "steps": 7},
]
RANK = {"waiting": 0, "running": 1, "done": 2}


def poll_until_done(server: RunningServer, task_id: str, timeout: float = 90.0) -> list[tuple[float, dict]]:
    """Every answer of /api/status for the task, as fast as one client can ask, until it is final."""
    samples = []
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while time.monotonic() < deadline:
            answer = session.get(server.url + "/api/status", params={"task_id": task_id}, timeout=10)
            assert answer.status_code == 200, answer.text
            samples.append((time.monotonic(), answer.json()))
            if samples[-1][1]["status"] not in ("waiting", "running"):
                return samples
    raise TimeoutError(f"task {task_id} not final after {timeout} s; last: {samples[-1][1] if samples else None}")


def describe(answer: dict) -> str:
    progress = answer["progress"]
    step = f" {progress['step']}/{progress['steps']}" if progress else ""
    return f"{answer['status']}{step} {answer['wait_remaining']:.3f} s"


def test_progress_and_countdown_never_go_back_over_whole_tasks(server_factory):
    server = server_factory("--no-previews", demo_speed=5)
    ids = [server.generate(f"monotonic {i}", **params) for i, params in enumerate(TASKS)]
    with ThreadPoolExecutor(len(ids)) as pool:
        histories = list(pool.map(lambda task_id: poll_until_done(server, task_id), ids))
    listed = {t["task_id"]: t for t in server.get("/api/tasks").json()}

    for task_id, params, history in zip(ids, TASKS, histories, strict=True):
        answers = [answer for _, answer in history]
        statuses = [answer["status"] for answer in answers]
        assert statuses[-1] == "done", (task_id, statuses[-1], answers[-1])
        ranks = [RANK[status] for status in statuses]
        assert ranks == sorted(ranks), f"{task_id}: status went back: {list(dict.fromkeys(statuses))}"
        answers = [answer for _, answer in history]
        running = [answer for answer in answers if answer["status"] == "running"]
        assert running, f"{task_id}: never seen running in {len(answers)} polls"

        steps = [answer["progress"]["step"] for answer in running]
        assert all(answer["progress"]["steps"] == params["steps"] for answer in running)
        assert all(0 <= step <= params["steps"] for step in steps)
        drops = [(a, b) for a, b in itertools.pairwise(steps) if b < a]
        assert not drops, f"{task_id}: the step went back {drops} in {steps}"

        # The countdown, once steps are measured, from the first step to the end (done: 0). A correction up is
        # honest when a step ran slower than the ones before; the bug jumped back by the whole task's time.
        engine_seconds = listed[task_id]["end_time"] - listed[task_id]["compute_time"]
        tolerance = max(0.3, 0.2 * engine_seconds)
        measured = [
            (at, answer)
            for at, answer in history
            if answer["status"] == "done" or (answer["status"] == "running" and answer["progress"]["step"] >= 1)
        ]
        jumps = [
            (round(at - history[0][0], 3), describe(a), describe(b))
            for (_, a), (at, b) in itertools.pairwise(measured)
            if b["wait_remaining"] - a["wait_remaining"] > tolerance
        ]
        assert not jumps, f"{task_id}: the remaining time jumped up by more than {tolerance:.2f} s: {jumps}"
        last_step = [answer["wait_remaining"] for answer in running if answer["progress"]["step"] == params["steps"]]
        # All steps done: only decoding and encoding are left, never the whole task again.
        assert all(wait <= max(0.5, engine_seconds / 2) for wait in last_step), (task_id, last_step, engine_seconds)
        assert all(answer["wait_remaining"] >= 0 for answer in answers)
    assert sum(len(history) for history in histories) > 100  # polled all along, not a handful of times
