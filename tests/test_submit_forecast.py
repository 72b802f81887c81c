"""The forecast a client gets when it submits: the engine's work ahead of it, and its own work, each once.

The expected values are written out from the cost model's coefficients (the forecaster's prior, which the
demo engine's figures set), not computed with the code under test.
"""

from __future__ import annotations

import pytest

from core.submissions import GenerationRequest


def own_seconds(parts, width: int, height: int, steps: int) -> float:
    """fixed + per-MP decode + steps × (per-step + per-step·MP + per-step·MP²) + encoding, by hand."""
    m = parts.forecaster.model
    mp = width * height / (1024 * 1024)
    render = m.fixed + m.per_megapixel * mp + steps * (m.per_step + m.per_step_megapixel * mp
                                                        + m.per_step_megapixel_sq * mp * mp)  # fmt: skip
    return render + parts.forecaster.encode.seconds("JPEG", mp)


def test_a_task_for_an_idle_engine_is_forecast_at_its_own_time_not_twice_it(service, parts, idle_engine):
    view = service.submit(GenerationRequest("alone", width=1024, height=768, steps=4))
    assert [m.task_id for m in idle_engine.sent] == [view.task.id]  # it went straight to the engine
    assert view.wait_remaining == pytest.approx(own_seconds(parts, 1024, 768, 4), rel=1e-9)
    assert view.tasks_ahead == 0


def test_a_task_behind_a_running_one_waits_for_it_and_then_its_own_time(service, parts, idle_engine):
    first = service.submit(GenerationRequest("first", width=512, height=512, steps=2))
    second = service.submit(GenerationRequest("second", width=1024, height=1024, steps=4))
    assert len(idle_engine.sent) == 1 and second.tasks_ahead == 1
    first_left = own_seconds(parts, 512, 512, 2) - parts.forecaster.encode.seconds("JPEG", 0.25)  # not started
    assert second.wait_remaining == pytest.approx(first_left + own_seconds(parts, 1024, 1024, 4), rel=1e-6)
    assert first.wait_remaining == pytest.approx(own_seconds(parts, 512, 512, 2), rel=1e-9)
