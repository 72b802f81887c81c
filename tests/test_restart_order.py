"""What a SIGTERM restart does to the queue (issue 14, items 12 and 13), as the README says: the interrupted task
runs again in its place — after a waiting priority task, before every normal task that came after it — and tasks
whose only consumer was a blocking call cut off by the shutdown are not rendered for nobody."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import requests

from harness.server_process import wait_for

README = Path(__file__).resolve().parents[1] / "README.md"


def started(server, task_id: str) -> float:
    listed = {t["task_id"]: t for t in server.get("/api/tasks", params={"limit": 100}).json()}
    return listed[task_id]["compute_time"]


def test_the_interrupted_task_runs_after_waiting_priority_tasks_and_before_later_ones(server_factory, tmp_path):
    data = tmp_path / "kept"
    server = server_factory(data_dir=data, demo_speed=2)
    interrupted = server.generate("running at the stop", width=1024, height=1024, steps=8)
    wait_for(lambda: server.status(interrupted)["status"] == "running", 20, what="it to run")
    urgent = server.generate("priority, waiting", priority=True)
    later = server.generate("normal, after it")
    server.stop(signal.SIGTERM)
    again = server_factory(data_dir=data, demo_speed=20)
    for task_id in (interrupted, urgent, later):
        assert again.wait_status(task_id, timeout=60)["status"] == "done"
    assert started(again, urgent) < started(again, interrupted) < started(again, later)
    promise = README.read_text(encoding="utf-8")
    assert "after any priority task waiting" in promise and "before every normal" in promise


def test_a_blocking_call_cut_off_by_a_shutdown_leaves_no_task_behind(server_factory, tmp_path):
    data = tmp_path / "kept"
    server = server_factory(data_dir=data, demo_speed=1)
    blocker = server.generate("ahead of the call", width=1024, height=1024, steps=8)

    def call() -> None:
        try:
            requests.post(server.url + "/v1/images/generations", json={"prompt": "waited for", "n": 2}, timeout=60)
        except requests.RequestException:
            pass  # the server goes away under it

    threading.Thread(target=call, daemon=True).start()
    wait_for(lambda: len(server.get("/api/tasks").json()) == 3, 20, what="the call's two tasks queued")
    awaited = [t["task_id"] for t in server.get("/api/tasks").json() if t["prompt"] == "waited for"]
    server.stop(signal.SIGTERM)
    again = server_factory(data_dir=data, demo_speed=20)
    assert again.wait_status(blocker, timeout=60)["status"] == "done"  # an /api task keeps its place
    for task_id in awaited:
        answer = again.get("/api/status", params={"task_id": task_id})
        assert answer.status_code == 410 and answer.json()["status"] == "cancelled"
