"""A hung worker is noticed (issue 14, item 2): a GPU driver hang or a deadlock (the demo engine's hang fault), a
paused process (SIGSTOP), a worker that does not stop a cancelled task. The watchdog judges progress phase by
phase against the forecast plus a floor (`--hung-after-seconds`, 2 here), kills the worker, starts another and
treats the task as after a crash; health says so meanwhile; the queue moves on."""

from __future__ import annotations

import os
import signal
import time

from harness.server_process import wait_for

HUNG_AFTER = ("--hung-after-seconds", "2")


def test_a_task_that_hangs_the_worker_is_killed_run_once_more_then_failed(server_factory):
    server = server_factory(*HUNG_AFTER, demo_speed=20)
    hung = server.generate("[demo-fault:hang-step-2]", width=256, height=256, steps=4)
    behind = server.generate("behind it", width=256, height=256, steps=2)
    first_pid = server.worker_pid()
    health = wait_for(lambda: (h := server.get("/api/health")).status_code == 503 and h.json(), 20,
                      what="health to say the worker is hung")  # fmt: skip
    assert "hung" in health["error"]
    failed = server.wait_status(hung, "failed", timeout=60)
    assert "hung" in failed["error"] and "2 times" in failed["error"]
    assert server.wait_status(behind, timeout=60)["status"] == "done"  # the queue moved on
    assert server.worker_pid() != first_pid
    assert server.get("/api/health").status_code == 200


def test_a_paused_worker_is_killed_and_its_task_runs_again(server_factory):
    server = server_factory(*HUNG_AFTER, demo_speed=4)
    task_id = server.generate("paused mid-way", width=512, height=512, steps=8)
    wait_for(lambda: (server.status(task_id)["progress"] or {}).get("step", 0) >= 1, 20, what="a step")
    paused = server.worker_pid()
    os.kill(paused, signal.SIGSTOP)
    try:
        done = server.wait_status(task_id, timeout=60)
    finally:
        try:
            os.kill(paused, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert done["status"] == "done" and server.worker_pid() != paused
    assert "hung" in server.log_text()


def test_cancelling_a_hung_task_frees_the_engine(server_factory):
    server = server_factory("--hung-after-seconds", "3", demo_speed=20)
    hung = server.generate("[demo-fault:hang-step-1]", width=256, height=256, steps=4)
    wait_for(lambda: server.status(hung)["status"] == "running", 10, what="it to run")
    began = time.monotonic()
    server.get("/api/cancel", params={"task_id": hung})
    after = server.generate("after the cancel", width=256, height=256, steps=2)
    assert server.wait_status(after, timeout=30)["status"] == "done"
    assert time.monotonic() - began < 20  # the floor and the restart, not forever
