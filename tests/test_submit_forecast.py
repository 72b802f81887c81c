"""The forecast a client gets when it submits: the engine's work ahead of it, and its own work, each once.

The expected values are written out from the cost model's coefficients (the forecaster's prior, which the
demo engine's figures set), not computed with the code under test.
"""

from __future__ import annotations

import pytest

from core.submissions import GenerationRequest


def own_seconds(parts, width: int, height: int, steps: int, first_after_load: bool = False) -> float:
    """encode + steps × (a + b·MP + c·MP²) [× warm-up, for the first image after a load] + decode (d + e·MP)
    + image encoding, written out by hand from the default model's costs (its prior: nothing has been learned
    in this test)."""
    m = parts.forecaster.costs("demo")
    mp = width * height / (1024 * 1024)
    a, b, c = m.step
    d, e = m.decode
    warmup = m.warmup if first_after_load else 1.0
    render = m.encode + steps * (a + b * mp + c * mp * mp) * warmup + d + e * mp
    return render + parts.forecaster.encode.seconds("JPEG", mp)


def test_a_task_for_an_idle_engine_is_forecast_at_its_own_time_not_twice_it(service, parts, idle_engine):
    view = service.submit(GenerationRequest("alone", width=1024, height=768, steps=4))
    assert [m.task_id for m in idle_engine.sent] == [view.task.id]  # it went straight to the engine
    # The model was loaded ahead of any task: this is its first image, which warms it up.
    assert view.wait_remaining == pytest.approx(own_seconds(parts, 1024, 768, 4, first_after_load=True), rel=1e-9)
    assert view.tasks_ahead == 0
    second = service.submit(GenerationRequest("second", width=1024, height=768, steps=4))
    assert second.wait_remaining == pytest.approx(
        own_seconds(parts, 1024, 768, 4, first_after_load=True)
        - parts.forecaster.encode.seconds("JPEG", 0.75)  # the first one's encoding is off the engine
        + own_seconds(parts, 1024, 768, 4),  # warm by then
        rel=1e-9,
    )


def test_a_task_behind_a_running_one_waits_for_it_and_then_its_own_time(service, parts, idle_engine):
    first = service.submit(GenerationRequest("first", width=512, height=512, steps=2))
    second = service.submit(GenerationRequest("second", width=1024, height=1024, steps=4))
    assert len(idle_engine.sent) == 1 and second.tasks_ahead == 1
    first_left = own_seconds(parts, 512, 512, 2, True) - parts.forecaster.encode.seconds("JPEG", 0.25)  # not started
    assert second.wait_remaining == pytest.approx(first_left + own_seconds(parts, 1024, 1024, 4), rel=1e-6)
    assert first.wait_remaining == pytest.approx(own_seconds(parts, 512, 512, 2, True), rel=1e-9)


def test_a_repeated_prompt_is_forecast_without_its_text_encoding(service, parts, idle_engine):
    """mflux caches prompt embeddings per loaded model: a batch of one prompt encodes it once."""
    service.submit(GenerationRequest("a batch", width=512, height=512, steps=2))  # on the engine
    other = service.submit(GenerationRequest("another prompt", width=512, height=512, steps=2))
    same = service.submit(GenerationRequest("a batch", width=512, height=512, steps=2))
    m = parts.forecaster.costs("demo")
    # Each waits for the engine, then its own image's encoding: the difference is the repeat's time on the engine.
    engine_seconds = own_seconds(parts, 512, 512, 2) - parts.forecaster.encode.seconds("JPEG", 0.25)
    assert same.wait_remaining - other.wait_remaining == pytest.approx(
        engine_seconds - (m.encode - m.encode_cached), rel=1e-9
    )


def test_a_task_of_the_warm_model_is_forecast_where_grouping_will_run_it(service, parts, idle_engine):
    """Behind tasks that need another model, a task of the loaded one goes first (within the fairness bound):
    its forecast says so at submit, and the tasks it overtakes are told they wait for it too."""
    service.submit(GenerationRequest("running", width=512, height=512, steps=2))  # on the engine, model "demo"
    other_model = [service.submit(GenerationRequest(f"other {i}", width=512, height=512, steps=2, model="demo-fast"))
                   for i in range(2)]  # fmt: skip
    before = service.status(other_model[0].task.id).wait_remaining
    warm = service.submit(GenerationRequest("warm", width=512, height=512, steps=2))
    assert warm.tasks_ahead == 1  # only the running task
    after = service.status(other_model[0].task.id)
    assert warm.wait_remaining < after.wait_remaining
    own = own_seconds(parts, 512, 512, 2, False) - parts.forecaster.encode.seconds("JPEG", 0.25)
    assert after.wait_remaining == pytest.approx(before + own, rel=1e-6)
    assert after.tasks_ahead == 2
