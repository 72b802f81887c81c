"""The soak (bench/soak.py) in 20 seconds: clients submitting, polling, cancelling and fetching while the worker
is killed or paused every few seconds and the data disk is full for a while; the books must balance: nothing
lost, no 5xx, every image its own task's."""

from __future__ import annotations

import pytest

from bench.soak import Settings, print_result, run

pytestmark = pytest.mark.slow


def test_short_soak_loses_nothing_under_worker_kills(capsys):
    settings = Settings(
        seconds=14, clients=4, in_flight=2, demo_speed=100, chaos_mean_seconds=3.0, poison_share=0.03,
        cancel_share=0.1, drain_seconds=60, seed=7, pause_share=0.4, pause_max_seconds=6, hung_after_seconds=3,
        disk_full_seconds=4, disk_mb=128,
    )  # fmt: skip
    result = run(settings, log=lambda line: None)
    with capsys.disabled():
        print_result(result)  # the figures, for whoever reads the test log
    assert result.submitted >= 20 and result.fetched_ok >= 10
    assert result.kills + result.pauses >= 2, "the chaos thread hardly touched the worker: the run proved little"
    assert result.disk_note or result.disk_full_seconds >= 4
    assert result.lost == []
    assert result.bad_images == []
    assert result.server_errors == [] and result.transport_errors == []
    assert result.unexpected == []
    assert result.leftover_files == [] and result.integrity == "ok" and result.exit_code == 0
    assert result.fetched_ok == result.done
    assert result.rss_growth_mb < 64, "a leak this fast would fill the machine within days"
