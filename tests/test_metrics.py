"""Observability: GET /metrics (Prometheus), GET /api/health, and one log line per task state change."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from core.submissions import GenerationRequest
from harness.server_process import RunningServer, wait_for
from taskqueue.service import TaskService

BIG = {"width": 2048, "height": 2048, "steps": 100}  # ~30 s on the engine at demo speed 50: stays running


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def task_lines(server: RunningServer, task_id: str) -> list[str]:
    return [line for line in server.lines if f"[{task_id}]" in line]


# -- end to end ------------------------------------------------------------------------------------------


def test_metrics_count_outcomes_durations_restarts_and_stored_images(server_factory):
    server = server_factory()
    blocker = server.generate("a long one", **BIG)
    server.wait_status(blocker, "running")
    waiting = server.generate("never runs")
    assert server.status(waiting)["status"] == "waiting"
    server.get("/api/cancel", params={"task_id": waiting})
    server.get("/api/cancel", params={"task_id": blocker})
    done = [server.generate("a fox", format="JPEG"), server.generate("a hen", format="PNG")]
    for task_id in done:
        server.wait_status(task_id, "done")
    raised = server.generate("[demo-fault:raise]")
    crashed = server.generate("[demo-fault:step-1]")  # kills the worker twice: re-run once, then failed
    server.wait_status(raised, "failed")
    server.wait_status(crashed, "failed")
    wait_for(server.model_loaded, 30, what="the third worker to load")
    sizes = [len(server.get("/api/image", params={"task_id": t, "delete": "false"}).content) for t in done]

    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    m = scrape(response.text)
    assert [metric(m, "mflux_tasks_finished_total", outcome=o) for o in ("done", "failed", "cancelled")] == [2, 2, 2]
    assert metric(m, "mflux_tasks_retried_total") == 1
    assert metric(m, "mflux_worker_restarts_total") == 2
    assert [metric(m, "mflux_tasks", status=s) for s in ("waiting", "running", "done", "failed", "cancelled")] == [
        0, 0, 2, 2, 2,
    ]  # fmt: skip
    assert (metric(m, "mflux_healthy"), metric(m, "mflux_worker_alive"), metric(m, "mflux_model_loaded")) == (1, 1, 1)
    assert metric(m, "mflux_engine_info", engine="demo", model="demo") == 1
    assert metric(m, "mflux_images_stored") == 2
    assert metric(m, "mflux_image_bytes_stored") == sum(sizes)
    # Only the two finished tasks rendered: one observation each, all positive.
    for name in ("mflux_task_engine_seconds", "mflux_step_seconds", "mflux_forecast_relative_error"):
        assert metric(m, f"{name}_count") == 2, name
        assert metric(m, f"{name}_bucket", le="+Inf") == 2, name
    assert 0 < metric(m, "mflux_step_seconds_sum") < metric(m, "mflux_task_engine_seconds_sum")
    assert metric(m, "mflux_task_latency_seconds_count") == 2

    server.get("/api/image", params={"task_id": done[0]})  # fetched once: gone from the store
    after = scrape(server.get("/metrics").text)
    assert metric(after, "mflux_images_stored") == 1
    assert metric(after, "mflux_image_bytes_stored") == sizes[1]


def test_health_is_503_with_the_reason_when_the_default_model_cannot_load(server_factory):
    server = server_factory(env={"MFLUX_DEMO_FAULT": "load-fail:demo"}, start=False).start(wait_ready=False)
    health = wait_for(
        lambda: "refused to load" in ((h := server.get("/api/health").json())["error"] or "") and h,
        30,
        what="health to report the load failure",
    )
    assert server.get("/api/health").status_code == 503
    assert health["ok"] is False and health["model_loaded"] is False
    assert health["worker_alive"] is True  # the worker lives on: other models still load
    assert "the default model demo cannot be loaded" in health["error"]
    assert scrape(server.get("/metrics").text)[("mflux_healthy", ())] == 0
    refused = server.post("/api/generate", json={"prompt": "x", "width": 256, "height": 256})
    assert refused.status_code == 503 and "refused to load" in refused.json()["message"]
    other = server.generate("another model", model="demo-fast")
    assert server.wait_status(other, "done")["model"] == "demo-fast"


def test_a_configuration_that_cannot_work_stops_the_start_with_the_reason(server_factory):
    server = server_factory(demo_speed=-1, start=False)
    with pytest.raises(RuntimeError, match=r"(?s)server exited \(2\).*--demo-speed must be positive"):
        server.start()


def test_logs_one_line_per_state_change_with_the_task_id_and_no_prompt_text(server_factory):
    server = server_factory()
    secret = "zebra quokka 4711"
    done = server.generate(secret)
    server.wait_status(done, "done")
    server.get("/api/image", params={"task_id": done})
    failed = server.generate(f"{secret} [demo-fault:raise]")
    server.wait_status(failed, "failed")
    blocker = server.generate(secret, **BIG)
    server.wait_status(blocker, "running")
    server.get("/api/cancel", params={"task_id": blocker})
    server.wait_for_log(re.compile(rf"\[{blocker}\] task {blocker} stopped mid-generation"))

    expected = {
        done: ["waiting", "running", "done", "image fetched"],
        failed: ["waiting", "running", "failed"],
        blocker: ["waiting", "running", "cancelled", "stopped"],
    }
    for task_id, states in expected.items():
        lines = [line.replace(f"{task_id}:", task_id) for line in task_lines(server, task_id)]
        lines = [line for line in lines if f"task {task_id} " in line]
        found = [next((state for state in states if f"task {task_id} {state}" in line), None) for line in lines]
        assert found == states, lines
    assert secret not in "\n".join(server.lines)
    assert "prompt 17 chars" in "\n".join(task_lines(server, done))


def test_log_prompts_puts_the_prompt_in_the_waiting_line(server_factory):
    server = server_factory("--log-prompts")
    task_id = server.generate("zebra quokka 4711")
    server.wait_for_log(re.compile(rf"task {task_id} waiting: .*prompt 'zebra quokka 4711'"))


# -- in process ------------------------------------------------------------------------------------------


def test_each_app_has_its_own_registry(service, parts_factory):
    """create_app runs many times in one process (the tests do): no global registry, no duplicate names."""
    other = TaskService(parts_factory("other"))
    apps = [create_app({"TESTING": True}, service=s) for s in (service, service, other)]
    service.submit(GenerationRequest(prompt="x", width=256, height=256))
    texts = [app.test_client().get("/metrics").get_data(as_text=True) for app in apps]
    assert [scrape(t)[("mflux_tasks", (("status", "waiting"),))] for t in texts] == [1, 1, 0]
    assert "/metrics" in apps[0].test_client().get("/openapi.json").get_json()["paths"]


def test_health_without_a_worker_is_503_and_says_why(service):
    client = create_app({"TESTING": True}, service=service).test_client()
    for _ in range(2):
        service.submit(GenerationRequest(prompt="x", width=256, height=256))
    response = client.get("/api/health")
    assert response.status_code == 503
    health = response.get_json()
    assert health["ok"] is False and health["worker_alive"] is False and health["worker_pid"] is None
    assert "not running" in health["error"]
    assert (health["waiting"], health["running"]) == (2, 0)
