"""The forecaster must learn: from a deliberately wrong prior, on costs that do not follow its own formula, with
what real mflux does (a prompt cache, a slower first image after a load, drift), and keep what it learned
across a restart. Plus the live countdown's properties (never negative, never going up once steps are timed).

The "truth" here is written independently of the forecaster's formula (a power law of the pixels, not its
polynomial), so a forecaster that stopped learning, or learned the wrong thing, fails these tests.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.progress import LiveProgress
from taskqueue.forecast import Forecaster, ModelCosts, Prior, Timing, remaining_seconds
from taskqueue.store import TaskStore

SIZES = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]


def true_step(megapixels: float, scale: float = 1.0) -> float:
    """A foreign per-step cost: superlinear in pixels, not the forecaster's a + b·MP + c·MP²."""
    return scale * (0.1 + 1.7 * megapixels**1.35)


def true_timing(rng: random.Random, key: str = "m", scale: float = 1.0, **overrides) -> Timing:
    mp = rng.choice(SIZES)
    steps = rng.choice([2, 4, 8, 20])
    noise = 1 + rng.uniform(-0.04, 0.04)
    fields = dict(
        key=key,
        megapixels=mp,
        steps=steps,
        before_loop=scale * 1.1 * noise,
        loop=steps * true_step(mp, scale) * noise,
        after_loop=scale * (0.1 + 0.5 * mp**1.1) * noise,
        prompt_cached=False,
        first_after_load=False,
    )
    return Timing(**(fields | overrides))


def true_seconds(timing: Timing) -> float:
    return timing.before_loop + timing.loop + timing.after_loop


def forecast(forecaster: Forecaster, timing: Timing) -> float:
    return forecaster.task_seconds(timing.key, timing.megapixels, timing.steps, bool(timing.prompt_cached), False)


def mape(forecaster: Forecaster, timings: list[Timing]) -> float:
    return sum(abs(forecast(forecaster, t) - true_seconds(t)) / true_seconds(t) for t in timings) / len(timings)


WRONG_PRIOR = Prior(seconds_per_step_at_1mp=0.6, load_seconds=5.0)  # the truth is ~3× slower (1.8 s at 1 MP)


def test_from_a_wrong_prior_the_error_falls_below_15_percent_within_a_few_tasks():
    rng = random.Random(1)
    forecaster = Forecaster({"m": WRONG_PRIOR})
    probes = [true_timing(rng) for _ in range(40)]
    before = mape(forecaster, probes)
    assert before > 0.5, "the prior must start far off, or this test proves nothing"
    for _ in range(8):
        forecaster.record(true_timing(rng))
    after = mape(forecaster, probes)
    assert after < 0.15, f"after 8 tasks the forecast is still {after:.0%} off (from {before:.0%})"


def test_a_forecaster_that_does_not_learn_fails_the_learning_test():
    """The control: the same probes with no learning stay far off (so the test above can fail)."""
    rng = random.Random(1)
    probes = [true_timing(rng) for _ in range(40)]
    assert mape(Forecaster({"m": WRONG_PRIOR}), probes) > 0.5


def test_what_was_learned_survives_a_restart(tmp_path):
    rng = random.Random(2)
    store = TaskStore(tmp_path / "tasks.sqlite3")
    forecaster = Forecaster({"m": WRONG_PRIOR}, persist=store.add_timing, persist_load=store.add_load)
    for _ in range(10):
        forecaster.record(true_timing(rng))
    forecaster.record_load("m", 12.0)
    probes = [true_timing(rng) for _ in range(20)]
    restarted = Forecaster({"m": WRONG_PRIOR}, store.timings(200), store.loads())
    assert mape(restarted, probes) == pytest.approx(mape(forecaster, probes), rel=1e-9)
    assert mape(restarted, probes) < 0.15
    assert restarted.load_seconds("m") == pytest.approx(12.0)
    store.close()


def test_models_are_learned_apart_and_an_unseen_model_borrows_this_machines_speed():
    rng = random.Random(3)
    priors = {"fast": Prior(0.6, 5.0), "slow": Prior(1.8, 5.0)}  # the catalog's relative costs: slow is 3×
    forecaster = Forecaster(priors)
    for _ in range(10):
        forecaster.record(true_timing(rng, key="fast", scale=1.0))  # this machine: 3× slower than the prior
    probes = [true_timing(rng, key="slow", scale=3.0) for _ in range(30)]
    assert forecaster.machine_factor() == pytest.approx(3.0, rel=0.35)
    # Never run, "slow" is forecast from its prior times the speed this machine showed on "fast".
    assert mape(forecaster, probes) < 0.3
    assert mape(Forecaster(priors), probes) > 0.5  # without that transfer: far off


def test_a_cached_prompt_is_forecast_without_its_text_encoding():
    rng = random.Random(4)
    forecaster = Forecaster({"m": WRONG_PRIOR})
    for index in range(16):
        cached = index % 2 == 1
        forecaster.record(true_timing(rng, prompt_cached=cached, before_loop=0.05 if cached else 1.1))
    costs = forecaster.costs("m")
    assert costs.before_loop(cached=False) == pytest.approx(1.1, rel=0.1)
    assert costs.before_loop(cached=True) == pytest.approx(0.05, rel=0.3)


def test_the_first_image_after_a_load_is_forecast_slower():
    rng = random.Random(5)
    forecaster = Forecaster({"m": WRONG_PRIOR})
    for index in range(20):
        timing = true_timing(rng)
        if index % 5 == 0:  # every fifth image comes right after a load: its steps 40 % slower
            timing = Timing(**(timing.__dict__ | {"loop": timing.loop * 1.4, "first_after_load": True}))
        forecaster.record(timing)
    assert forecaster.costs("m").warmup == pytest.approx(1.4, rel=0.1)


def test_drift_is_followed_the_newest_images_weigh_most():
    """A machine that heats up: each image 1 % slower than the one before, 60 in all."""
    rng = random.Random(6)
    forecaster = Forecaster({"m": WRONG_PRIOR})
    scale = 1.0
    for _ in range(60):
        scale *= 1.01
        forecaster.record(true_timing(rng, scale=scale))
    probes = [true_timing(rng, scale=scale) for _ in range(30)]
    assert mape(forecaster, probes) < 0.12


def test_load_times_are_learned_per_model():
    forecaster = Forecaster({"m": WRONG_PRIOR, "n": WRONG_PRIOR})
    assert forecaster.load_seconds("m") == 5.0  # the prior
    for seconds in (30.0, 34.0, 32.0):
        forecaster.record_load("m", seconds)
    assert 30.0 <= forecaster.load_seconds("m") <= 34.0
    assert forecaster.load_seconds("n") == 5.0


def test_a_quantized_variant_starts_from_its_models_prior():
    forecaster = Forecaster({"dev": Prior(6.3, 20.0)})
    assert forecaster.costs("dev@q8").step_seconds(1.0) == pytest.approx(forecaster.costs("dev").step_seconds(1.0))


# -- the live countdown -------------------------------------------------------------------------------------

COSTS = st.builds(lambda s, load: ModelCosts.from_prior(Prior(s, load)), st.floats(0.01, 20.0), st.floats(0.0, 60.0))


@given(
    costs=COSTS,
    mp=st.floats(0.01, 4.0),
    steps=st.integers(1, 60),
    timeline=st.lists(st.floats(0.0, 30.0), min_size=3, max_size=70),
    probes=st.lists(st.floats(-5.0, 100.0), min_size=1, max_size=5),
)
@settings(max_examples=300, deadline=None)
def test_remaining_seconds_is_never_negative(costs, mp, steps, timeline, probes):
    """Whatever the engine does (any step durations, any moment we ask, even a clock that went backwards)."""
    started = 1000.0
    loop_started = started + timeline[0]
    done_times = list(itertools.accumulate(timeline[1 : steps + 1], initial=loop_started))[1:]
    states = [LiveProgress("t", started, steps, 0), LiveProgress("t", started, steps, 0, loop_started)]
    states += [LiveProgress("t", started, steps, k, loop_started, at) for k, at in enumerate(done_times, start=1)]
    assert remaining_seconds(costs, mp, steps, False, False, None, started) >= 0
    for live in states:
        for offset in probes:
            now = (live.last_step_at or started) + offset
            assert remaining_seconds(costs, mp, steps, False, False, live, now) >= 0


def _is_non_increasing(values: list[float]) -> bool:
    return all(later <= earlier * (1 + 1e-9) + 1e-9 for earlier, later in itertools.pairwise(values))


@given(costs=COSTS, mp=st.floats(0.01, 4.0), steps=st.integers(1, 60), slowness=st.floats(0.2, 5.0))
@settings(max_examples=300, deadline=None)
def test_remaining_seconds_counts_down_once_steps_are_measured(costs, mp, steps, slowness):
    """On a steady engine, from the first measured step on, the countdown never goes up, whatever its speed
    (before that it is the model's guess, and a slower engine than modelled rightly raises it)."""
    step = costs.step_seconds(mp) * slowness
    started = 1000.0
    loop_started = started + costs.encode * slowness
    measured = []
    for k in range(1, steps + 1):
        at = loop_started + k * step
        live = LiveProgress("t", started, steps, k, loop_started, at)
        measured += [remaining_seconds(costs, mp, steps, False, False, live, now) for now in (at, at + step / 2)]
    assert _is_non_increasing(measured) and min(measured) >= 0


def test_a_rendered_task_holds_the_engine_no_longer():
    costs = ModelCosts.from_prior(Prior(2.0, 10.0))
    live = LiveProgress("t", 1000.0, 4, 4, 1001.0, 1005.0, rendered_at=1005.5)
    assert remaining_seconds(costs, 1.0, 4, False, False, live, 1005.6) == 0.0
