"""Models chosen per task, end to end on the real server: the listings (/api/ls, /api/ps), switching the
default (POST /api/load), a task's `model`, grouping the queue by model within its bound, one load for two tasks
that need the same cold model, load failures that fail only their model's tasks, and forecasts that count loads.

The demo engine's models differ in speed and load time (worker/engines/demo/catalog.py): at --demo-speed 2,
demo-fast loads in ~0.25 s, demo-slow in ~1.25 s, and a 1024² step of demo takes ~1 s.
"""

from __future__ import annotations

import re

import pytest

from harness.server_process import wait_for

LOADED = re.compile(r"loaded (\S+) in")
BLOCKER = {"prompt": "holds the engine", "width": 1024, "height": 1024, "steps": 40}


def loads(server) -> list[str]:
    return [match.group(1) for line in server.lines if (match := LOADED.search(line))]


def tasks_by_start(server, task_ids: list[str]) -> list[str]:
    listed = {t["task_id"]: t for t in server.get("/api/tasks", params={"limit": 1000}).json()}
    return sorted(task_ids, key=lambda task_id: listed[task_id]["compute_time"])


def test_the_listings_say_what_is_offered_loaded_and_what_a_switch_costs(server_factory):
    server = server_factory("--models", "demo,demo-fast", "--max-side", "1536", demo_speed=2)
    listed = server.get("/api/ls").json()
    assert list(listed) == ["demo", "demo-fast"]  # offered only, keyed by name as the original
    demo, fast = listed["demo"], listed["demo-fast"]
    assert demo["loader"] == "demo" and demo["steps"] == 4 and demo["default"] and demo["loaded"]
    assert fast["offered"] and fast["present"] and not fast["loaded"] and not fast["default"]
    assert demo["switch_seconds"] == 0 and fast["switch_seconds"] > 0  # a switch to it costs its load
    assert demo["max_side"] == 1536 and demo["min_side"] >= 64  # the model's sides within this server's limits
    assert "demo-slow" in server.get("/api/ls", params={"all": "true"}).json()  # the whole catalog
    settings = server.get("/api/ps").json()
    assert (settings["model"], settings["default_steps"], settings["loaded"]) == ("demo", 4, ["demo"])


def test_a_task_names_its_model_and_unknown_or_unoffered_models_are_refused(server_factory):
    server = server_factory("--models", "demo,demo-fast", demo_speed=4)
    task = server.generate(model="demo-fast")
    assert server.wait_status(task)["model"] == "demo-fast"
    listed = server.get("/api/tasks").json()
    assert [t["model"] for t in listed if t["task_id"] == task] == ["demo-fast"]
    unknown = server.post("/api/generate", json={"prompt": "x", "model": "nonesuch"})
    assert unknown.status_code == 422
    assert "nonesuch" in unknown.text and "demo, demo-fast" in unknown.json()["errors"]["json"]["model"][0]
    unoffered = server.post("/api/generate", json={"prompt": "x", "model": "demo-slow"})
    assert unoffered.status_code == 422
    assert "--models demo-slow" in unoffered.json()["errors"]["json"]["model"][0]
    assert server.get("/api/tasks").headers["X-Total-Count"] == "1"  # nothing refused was queued


def test_load_switches_the_default_and_answers_once_loaded(server_factory):
    server = server_factory(demo_speed=2)
    answer = server.post("/api/load", json={"model": "demo-slow"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "demo-slow" and answer.json()["loaded"]  # loaded when it answers
    assert server.get("/api/ps").json()["model"] == "demo-slow"
    assert server.wait_status(server.generate())["model"] == "demo-slow"  # tasks naming no model run it
    refused = server.post("/api/load", json={"model": "nonesuch"})
    assert refused.status_code == 422 and "nonesuch" in refused.text
    assert server.get("/api/ps").json()["model"] == "demo-slow"


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "first-come-first-served"])
def test_the_queue_groups_tasks_by_loaded_model_within_its_bound(server_factory, grouped):
    args = () if grouped else ("--max-overtakes", "0")
    server = server_factory(*args, demo_speed=2)
    blocker = server.generate(**BLOCKER)
    wait_for(lambda: server.status(blocker)["status"] == "running", what="the blocker to run")
    order = ["demo-fast", "demo", "demo-fast", "demo"]
    queued = [server.generate(f"task {i}", model=model) for i, model in enumerate(order)]
    before = len(loads(server))
    server.get("/api/cancel", params={"task_id": blocker})
    for task in queued:
        server.wait_status(task)
    started = tasks_by_start(server, queued)
    switches = loads(server)[before:]
    if grouped:  # the loaded model's tasks go first, then demo-fast, loaded once
        assert started == [queued[1], queued[3], queued[0], queued[2]]
        assert switches == ["demo-fast"]
    else:
        assert started == queued
        assert switches == ["demo-fast", "demo", "demo-fast", "demo"]


def test_two_tasks_for_the_same_cold_model_cause_one_load(server_factory):
    server = server_factory(demo_speed=2)
    first, second = (server.generate(f"cold {i}", model="demo-slow") for i in range(2))
    server.wait_status(first)
    server.wait_status(second)
    assert loads(server).count("demo-slow") == 1


def test_a_model_that_fails_to_load_fails_only_its_tasks(server_factory):
    server = server_factory(env={"MFLUX_DEMO_FAULT": "load-fail:demo-slow"}, demo_speed=4)
    doomed = server.generate("on the broken model", model="demo-slow")
    fine = server.generate("on the default")
    assert server.wait_status(fine)["status"] == "done"
    failed = server.get("/api/status", params={"task_id": doomed})
    assert failed.status_code == 410  # so that the original's clients stop polling
    assert failed.json()["status"] == "failed" and "load failed" in failed.json()["error"]
    listed = server.get("/api/ls").json()["demo-slow"]
    assert listed["load_error"] and not listed["loaded"]
    refused = server.post("/api/generate", json={"prompt": "again", "model": "demo-slow"})
    assert refused.status_code == 503 and "demo-slow" in refused.json()["message"]
    assert server.wait_status(server.generate("still serving"))["status"] == "done"


def test_the_forecast_of_a_task_behind_a_switch_includes_the_load(server_factory):
    server = server_factory(demo_speed=2)
    blocker = server.generate(**BLOCKER)
    same = server.post("/api/generate", json={"prompt": "same model", "width": 256, "height": 256, "steps": 2})
    other = server.post("/api/generate", json={"prompt": "x", "width": 256, "height": 256, "steps": 2,
                                               "model": "demo-slow"})  # fmt: skip
    load = server.get("/api/ls").json()["demo-slow"]["switch_seconds"]
    assert load > 0.5
    # Same work on each model but the load (demo-slow's steps cost more too: at least the load apart).
    assert other.json()["expected_time_seconds"] - same.json()["expected_time_seconds"] >= load
    status = server.status(other.json()["task_id"])
    assert status["loading_model"] == "demo-slow"  # it will be loaded before it runs
    server.get("/api/cancel", params={"task_id": blocker})
    server.wait_status(other.json()["task_id"])


def test_load_times_are_learned_and_kept_across_a_restart(server_factory, tmp_path):
    """Loads measured at --demo-speed 2 are what a server on the same data directory expects after a restart,
    though its catalog would guess twice as long at --demo-speed 1."""
    data = tmp_path / "kept"
    server = server_factory(data_dir=data, demo_speed=2)
    server.wait_status(server.generate(model="demo-slow"))
    measured = server.get("/api/ls").json()["demo"]["switch_seconds"]  # demo-slow is loaded now: demo is not
    assert measured == pytest.approx(0.5, abs=0.1)  # demo loads for 1 s at speed 1: 0.5 s at speed 2
    server.stop()
    again = server_factory(data_dir=data, demo_speed=1)
    assert again.get("/api/ls").json()["demo-slow"]["switch_seconds"] == pytest.approx(1.25, abs=0.1)
    assert again.get("/api/ls", params={"all": "true"}).json()["demo-fast"]["switch_seconds"] == 0.5  # never loaded
