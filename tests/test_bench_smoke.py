"""Every benchmark in bench/ runs, in a tiny configuration, so that none of them can rot.

These check that each produced sane figures (counts add up, durations are positive and finite), never the
performance targets: those are judged by `python -m bench` on a quiet machine and recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import math
import shutil

import pytest

from bench import (
    api_memory,
    forecast_accuracy,
    idle_gap,
    mac_mflux,
    model_switching,
    polling_load,
    queue_scale,
    scale_out,
)
from bench.harness import Api, running_server
from bench.report import Section
from harness.remote import REDIS_MISSING

pytestmark = pytest.mark.slow


def assert_reported(section: Section) -> None:
    text = section.markdown()
    assert section.title in text and section.verdicts
    for verdict in section.verdicts:
        assert verdict.measured and verdict.measured in text


def sane_summary(summary: dict, count: int) -> None:
    assert summary["count"] == count
    assert 0 <= summary["p50"] <= summary["p99"] <= summary["max"] < 30


def test_idle_gap():
    section = idle_gap.run(idle_gap.SMOKE)
    assert_reported(section)
    tasks = idle_gap.SMOKE.tasks
    sane_summary(section.data["idle_client"], tasks)
    sane_summary(section.data["idle_server"], tasks)
    sane_summary(section.data["gap"], tasks - 1)
    assert section.data["idle_server"]["p50"] <= section.data["idle_client"]["p50"]


def test_polling_load():
    section = polling_load.run(polling_load.SMOKE)
    assert_reported(section)
    for load in ("status", "mix"):
        figures = section.data[load]
        assert figures["rate"] > 10
        assert figures["failed"] == 0, figures["errors"]
        assert 0 < figures["latency"]["p50"] <= figures["latency"]["max"] < 30
    assert set(section.data["mix"]["statuses"]) == {"status", "tasks", "generate"}
    assert section.data["engine_busy_throughout"]


def test_forecast_accuracy():
    config = forecast_accuracy.SMOKE
    section = forecast_accuracy.run(config)
    assert_reported(section)
    data = section.data
    # The cancellation comes a second after its task: at this speed the task may have finished by then.
    assert data["finished"] + data["cancelled"] == config.tasks and data["cancelled"] <= 1
    assert 1 <= data["first 5"]["tasks"] <= 5  # those waiting over the restart are counted apart
    assert data["all submitted after the restart"]["tasks"] >= 1
    # Bounds for this tiny, fast configuration (speed 40: tasks of 0.1-0.5 s, where the fixed costs of HTTP,
    # encoding and scheduling weigh most), and for a machine that may be busy with other work: the accuracy
    # targets themselves are the benchmark's (BENCHMARKS.md, section 3). Seen: the prior's tasks 40-44 % off,
    # the learned model's (after the restart) 8-31 % on a quiet machine and 54 % beside a soak. Below 80 %
    # still catches a forecast of nothing (100 % off) or of twice the time. Tasks waiting across the restart
    # (the server down for seconds in the middle of their wait, ~90 %) are not bounded: no forecast knows that.
    bounds = {"first 5": 0.8, "all submitted after the restart": 0.8}
    for group, bound in bounds.items():
        assert 0 <= data[group]["expected_mape"] < bound, (group, data[group])
        remaining = data[group]["remaining_mape"]
        assert math.isnan(remaining) if data[group]["samples"] == 0 else 0 <= remaining < bound, (group, data[group])
    assert data["all"]["tasks"] == data["finished"]


def test_queue_scale():
    config = queue_scale.SMOKE
    section = queue_scale.run(config)
    assert_reported(section)
    sane_summary(section.data["submit"], config.waiting)
    sane_summary(section.data["status"], config.status_samples)
    assert section.data["left_on_disk"] == 0
    assert [count for count, _ in section.data["rss_samples"]][-1] == config.images
    assert all(rss > 10e6 for _, rss in section.data["rss_samples"])


def test_mac_mflux_dry_run():
    config = mac_mflux.SMOKE
    section = mac_mflux.run(config)
    assert_reported(section)
    data = section.data
    assert len(data["plain"]) == len(data["engine"]) == config.images
    assert all(0 < seconds < 30 for seconds in data["plain"] + data["engine"])
    # How much the server adds to the engine's own time: a figure for BENCHMARKS.md, not bounded here (at the
    # smoke test's tiny sizes it is mostly fixed costs, and it swings with whatever else the machine runs).
    assert math.isfinite(data["overhead"]) and data["overhead"] > -0.9
    assert data["forecast"]["tasks"] == config.images


def test_mac_mflux_refuses_clearly_without_apple_silicon_or_mflux():
    problem = mac_mflux.preflight(mac_mflux.Config())
    if problem is None:
        pytest.skip("this machine can run the real benchmark")
    assert "--dry-run" in problem or "mflux" in problem


def test_model_switching():
    config = model_switching.SMOKE
    section = model_switching.run(config)
    assert_reported(section)
    data = section.data
    for run in ("grouped", "fifo"):
        assert data[f"{run} all"]["tasks"] == config.tasks  # every task finished, on both runs
        assert data[run]["loads"] >= 1 and data[run]["makespan"] > 0
    assert data["fifo"]["worst_overtakes"] == 0  # --max-overtakes 0 is first come, first served
    assert data["grouped"]["worst_overtakes"] <= 8


def test_scale_out():
    if shutil.which("redis-server") is None:
        pytest.skip(REDIS_MISSING)
    config = scale_out.SMOKE
    section = scale_out.run(config)
    assert_reported(section)
    data = section.data
    assert set(data["throughput"]) == {1, 2, 3} and all(s > 0 for s in data["throughput"].values())
    chaos = data["chaos"]
    assert chaos["submitted"] == config.chaos_tasks and chaos["lost"] == 0 and chaos["duplicated"] == 0
    assert chaos["done"] + chaos["failed"] == chaos["submitted"]
    assert data["forecast"]["tasks"] == config.forecast_tasks - 12


def test_api_memory():
    section = api_memory.run(api_memory.Config(tasks=120, clients=4, sample_every=40))
    assert_reported(section)
    samples = section.data["samples"]
    assert len(samples) == 2 and all(len(arm) >= 3 and all(mb > 0 for _, mb in arm) for arm in samples.values())


def test_the_benchmarks_client_reads_a_cancelled_tasks_status():
    """Failed and cancelled tasks answer 410 (the original's clients stop on it); the benchmarks' client raised
    on it, and the forecast benchmark waited out its timeout for a cancelled task it could never see end."""
    with running_server(demo_speed=1.0) as server:
        api = Api(server.url)
        task_id = api.generate({"prompt": "cancelled", "width": 1024, "height": 1024, "steps": 50})["task_id"]
        server.get("/api/cancel", params={"task_id": task_id})
        assert api.status(task_id)["status"] == "cancelled"
