"""How long will it take? The one place that knows.

Each model's cost is learned apart, phase by phase, from what the worker times of every image:

    seconds = before_loop + steps × step(MP) × (warm-up factor, first image after a load) + after_loop(MP)
    step(MP) = a + b·MP + c·MP²      (linear layers grow with the tokens, attention with their square)
    before_loop = text encoding (+ latents); much less when mflux's prompt cache has the prompt
    after_loop(MP) = d + e·MP        (decoding)

and loading a model is learned as its own figure. Nothing here assumes the engine follows this formula: each
phase is fitted to its own measurements (a per-step mean over the loop, a decode time, an encode time), the
newest weigh most (a machine that heats up or is shared drifts), and each fit starts from a prior that only
sets the shape, calibrated in level by the first observations. A model never seen yet borrows the speed this
machine has shown on the models it has run (its prior times their median measured/prior ratio).

Everything is pure but `Forecaster`, a thread-safe holder of what was learned: history and clock come in as
arguments, and what is learned is persisted through the callbacks it is given.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from core.progress import LiveProgress

HISTORY_SIZE = 200  # the newest timings of each model the fit learns from
HALF_LIFE = 25.0  # observations: how fast old measurements stop counting in the fit of each phase's shape
LOCAL = "local"  # the server's own worker
LEVEL_HALF_LIFE = 6.0  # observations: how fast the overall level follows a machine that drifts (heat, sharing)
PRIOR_WEIGHT = 2.0  # how many observations' worth of trust the prior shape keeps
LOAD_SMOOTHING = 0.5  # weight of the newest load time
REFERENCE_MP = 1.0  # the size the step prior's level is measured at


@dataclass(frozen=True)
class Timing:
    """One rendered image, as the worker timed it."""

    key: str  # the model's cost key (Variant.cost_key)
    megapixels: float
    steps: int  # denoising steps that ran
    before_loop: float
    loop: float
    after_loop: float
    prompt_cached: bool | None = None
    first_after_load: bool = False
    worker: str = LOCAL  # which machine ran it: each learns its own speed

    @property
    def step(self) -> float:
        return self.loop / self.steps if self.steps else 0.0


@dataclass(frozen=True)
class Prior:
    """What the catalog guesses about a model before anything was measured."""

    seconds_per_step_at_1mp: float
    load_seconds: float


@dataclass(frozen=True)
class ModelCosts:
    step: tuple[float, float, float]  # a, b, c of a + b·MP + c·MP² seconds per step
    encode: float  # before the loop, prompt not cached
    encode_cached: float  # before the loop, prompt cached
    decode: tuple[float, float]  # d, e of d + e·MP seconds after the loop
    warmup: float  # factor on the steps of the first image after a load
    load: float  # seconds to load the model
    observed: int = 0  # timings it was learned from

    def step_seconds(self, megapixels: float) -> float:
        a, b, c = self.step
        return a + b * megapixels + c * megapixels**2

    def before_loop(self, cached: bool) -> float:
        return self.encode_cached if cached else self.encode

    def after_loop(self, megapixels: float) -> float:
        return self.decode[0] + self.decode[1] * megapixels

    def seconds(self, megapixels: float, steps: int, cached: bool = False, first_after_load: bool = False) -> float:
        """Seconds on the engine, from taking the task to its pixels (its load not included)."""
        loop = steps * self.step_seconds(megapixels) * (self.warmup if first_after_load else 1.0)
        return self.before_loop(cached) + loop + self.after_loop(megapixels)

    def scaled(self, factor: float) -> ModelCosts:
        return replace(
            self,
            step=tuple(x * factor for x in self.step),
            encode=self.encode * factor,
            encode_cached=self.encode_cached * factor,
            decode=(self.decode[0] * factor, self.decode[1] * factor),
        )

    @classmethod
    def from_prior(cls, prior: Prior) -> ModelCosts:
        """A diffusion-transformer shaped guess from one figure: the time of one step at one megapixel."""
        s = prior.seconds_per_step_at_1mp
        return cls(
            step=(0.04 * s, 0.72 * s, 0.24 * s),
            encode=0.3 * s,
            encode_cached=0.02 * s,
            decode=(0.05 * s, 0.35 * s),
            warmup=1.25,
            load=prior.load_seconds,
        )


def recency_weights(count: int, half_life: float = HALF_LIFE) -> np.ndarray:
    """The newest observation weighs 1, one half-life older weighs 1/2."""
    return 0.5 ** (np.arange(count - 1, -1, -1) / half_life)


def learn(prior: ModelCosts, timings: list[Timing]) -> ModelCosts:
    """A model's costs from its timings (oldest first), starting from `prior`."""
    usable = [t for t in timings if t.steps > 0 and t.loop > 0 and t.megapixels > 0]
    if not usable:
        return prior
    steady = [t for t in usable if not t.first_after_load]
    if steady:
        step = fit_step(prior.step, [t.megapixels for t in steady], [t.step for t in steady])
    else:  # only first images after loads so far: take the warm-up the prior expects out of them
        step = fit_step(prior.step, [t.megapixels for t in usable], [t.step / prior.warmup for t in usable])
    costs = replace(prior, step=step, observed=len(usable))
    encode = _weighted_mean([t.before_loop for t in usable if not t.prompt_cached], prior.encode)
    cached = _weighted_mean([t.before_loop for t in usable if t.prompt_cached], None)
    if cached is None:  # never seen a cached prompt: keep the prior's proportion to the uncached encode
        cached = encode * prior.encode_cached / prior.encode if prior.encode else prior.encode_cached
    decode = fit_decode(prior.decode, [t.megapixels for t in usable], [t.after_loop for t in usable])
    first = [t for t in usable if t.first_after_load]
    warmup = prior.warmup
    if first and steady:
        ratios = [t.step / max(costs.step_seconds(t.megapixels), 1e-9) for t in first]
        warmup = max(1.0, _weighted_mean(ratios, prior.warmup))
    costs = replace(costs, encode=encode, encode_cached=min(cached, encode), decode=decode, warmup=warmup)
    return costs.scaled(_level(costs, usable))


def _level(costs: ModelCosts, timings: list[Timing]) -> float:
    """How far the newest images ran from the fitted costs (a geometric mean weighted to the newest): the phase
    fits keep a long memory to stay steady, and this follows a machine whose speed drifts."""
    ratios = []
    for t in timings:
        predicted = costs.seconds(t.megapixels, t.steps, bool(t.prompt_cached), t.first_after_load)
        actual = t.before_loop + t.loop + t.after_loop
        if predicted > 0 and actual > 0:
            ratios.append(math.log(actual / predicted))
    if not ratios:
        return 1.0
    w = recency_weights(len(ratios), LEVEL_HALF_LIFE)
    return math.exp(float(np.sum(w * np.array(ratios)) / np.sum(w)))


def fit_step(prior: tuple[float, float, float], megapixels: list[float], seconds: list[float]) -> tuple[float, ...]:
    """Per-step seconds a + b·MP + c·MP², fitted in relative error to recent-weighted measurements.

    The prior's level is calibrated first (weighted geometric mean of measured / predicted), then the data
    reshape it; penalty rows pull each coefficient towards the calibrated prior by how much it moves the
    prediction at REFERENCE_MP, so a few same-sized images cannot produce a wild curve."""
    x = np.array([[1.0, mp, mp * mp] for mp in megapixels])
    y = np.array(seconds)
    w = recency_weights(len(y))
    prior_coef = np.array(prior)
    predicted = x @ prior_coef
    level = math.exp(float(np.sum(w * np.log(y / predicted)) / np.sum(w)))
    base = prior_coef * level
    reference = np.array([1.0, REFERENCE_MP, REFERENCE_MP**2])
    penalty = math.sqrt(PRIOR_WEIGHT / len(reference)) * reference / float(reference @ base)
    sqrt_w = np.sqrt(w)[:, None]
    rows = np.vstack([(x / y[:, None]) * sqrt_w, np.diag(penalty)])
    targets = np.concatenate([sqrt_w[:, 0], penalty * base])
    return tuple(_nonnegative_least_squares(rows, targets))


def fit_decode(prior: tuple[float, float], megapixels: list[float], seconds: list[float]) -> tuple[float, float]:
    """After-loop seconds d + e·MP, recent-weighted, pulled towards the prior's shape like `fit_step`."""
    x = np.array([[1.0, mp] for mp in megapixels])
    y = np.maximum(np.array(seconds), 1e-3)
    w = recency_weights(len(y))
    prior_coef = np.array(prior)
    level = math.exp(float(np.sum(w * np.log(y / np.maximum(x @ prior_coef, 1e-9))) / np.sum(w)))
    base = prior_coef * level
    reference = np.array([1.0, REFERENCE_MP])
    penalty = math.sqrt(PRIOR_WEIGHT / 2) * reference / max(float(reference @ base), 1e-9)
    sqrt_w = np.sqrt(w)[:, None]
    rows = np.vstack([(x / y[:, None]) * sqrt_w, np.diag(penalty)])
    targets = np.concatenate([sqrt_w[:, 0], penalty * base])
    d, e = _nonnegative_least_squares(rows, targets)
    return d, e


def _weighted_mean(values: list[float], default: float | None) -> float | None:
    if not values:
        return default
    w = recency_weights(len(values))
    return float(np.sum(w * np.array(values)) / np.sum(w))


def _nonnegative_least_squares(rows: np.ndarray, targets: np.ndarray) -> list[float]:
    """Least squares with every coefficient >= 0, by dropping the most negative one until none is left."""
    free = list(range(rows.shape[1]))
    coef = np.zeros(rows.shape[1])
    while free:
        solution, *_ = np.linalg.lstsq(rows[:, free], targets, rcond=None)
        if (solution >= 0).all():
            coef[free] = solution
            break
        free.pop(int(np.argmin(solution)))
    return [float(c) for c in coef]


def remaining_seconds(
    costs: ModelCosts, megapixels: float, steps: int, cached: bool, first: bool, live: LiveProgress | None, now: float
) -> float:
    """Seconds until the task on the engine releases it, using its measured step times once it has some."""
    after_loop = costs.after_loop(megapixels)
    step = costs.step_seconds(megapixels) * (costs.warmup if first else 1.0)
    if live is None:
        return costs.seconds(megapixels, steps, cached, first)
    if live.rendered_at is not None:
        return 0.0
    if live.loop_started_at is None:
        before_loop_left = max(costs.before_loop(cached) - (now - live.started_at), 0.0)
        return before_loop_left + steps * step + after_loop
    if live.steps_done == 0 or live.last_step_at is None:
        loop_left = max(steps * step - (now - live.loop_started_at), 0.0)
        return loop_left + after_loop
    measured_step = (live.last_step_at - live.loop_started_at) / live.steps_done
    steps_left = max(live.steps - live.steps_done, 0)
    return max(steps_left * measured_step + after_loop - (now - live.last_step_at), 0.0)


class EncodeRates:
    """Seconds per megapixel to encode and store each image format, as a moving average."""

    DEFAULTS = {"JPEG": 0.02, "PNG": 0.25, "WEBP": 0.3}
    SMOOTHING = 0.2

    def __init__(self, rates: dict[str, float] | None = None) -> None:
        self._rates = dict(self.DEFAULTS) | dict(rates or {})

    def seconds(self, image_format: str, megapixels: float) -> float:
        return self._rates.get(image_format, 0.1) * megapixels

    def record(self, image_format: str, megapixels: float, seconds: float) -> None:
        if megapixels <= 0 or seconds < 0:
            return
        old = self._rates.get(image_format, seconds / megapixels)
        self._rates[image_format] = old + self.SMOOTHING * (seconds / megapixels - old)

    def as_dict(self) -> dict[str, float]:
        return dict(self._rates)


class Forecaster:
    """What was learned of each model on each worker, refitted as images are rendered; safe to share between
    threads.

    Costs are learned per (worker, model): machines differ several times over (an M1 Air against an M3 Ultra).
    A worker that has not run a model yet borrows the model's costs from the worker that ran it most, scaled by
    how much faster or slower the two have been on the models both ran; failing that, the catalog's prior at
    that worker's (or, knowing nothing of it, every worker's) measured speed."""

    def __init__(
        self,
        priors: Mapping[str, Prior],
        timings: Iterable[Timing] = (),
        loads: Mapping[tuple[str, str], float] | None = None,
        persist: Callable[[Timing], None] | None = None,
        persist_load: Callable[[str, float, str], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._priors = dict(priors)
        self._history: dict[tuple[str, str], deque[Timing]] = defaultdict(lambda: deque(maxlen=HISTORY_SIZE))
        for timing in timings:
            self._history[(timing.worker, timing.key)].append(timing)
        self._loads = dict(loads or {})
        self._learned: dict[tuple[str, str], ModelCosts] = {pair: self._fit(*pair) for pair in self._history}
        self._persist = persist
        self._persist_load = persist_load
        self.encode = EncodeRates()
        # `costs` per (worker, model) until something is learned: a plan of 10,000 tasks asks for them 10,000
        # times, and working them out (borrowing, scaling, the machine factor) each time made a priority
        # submission to a long queue take 0.2 s. The generation tells a stale answer from a current one.
        self._memo: dict[tuple[str, str], ModelCosts] = {}
        self._generation = 0

    def _learned_something(self) -> None:
        """Call holding the lock, after any change to what `costs` reads."""
        self._generation += 1
        self._memo = {}

    def add_prior(self, key: str, prior: Prior) -> None:
        """A cost key (a model at a quantization) the catalog describes; call before forecasting for it."""
        with self._lock:
            self._priors.setdefault(key, prior)
            self._learned_something()

    def costs(self, key: str, worker: str = LOCAL) -> ModelCosts:
        """The model's costs on this worker: learned there, or borrowed (see the class), or the prior."""
        found = self._memo.get((worker, key))
        if found is not None:
            return found
        generation = self._generation
        costs = self._work_out_costs(key, worker)
        with self._lock:
            if generation == self._generation:  # nothing was learned meanwhile: still the current answer
                self._memo[(worker, key)] = costs
        return costs

    def _work_out_costs(self, key: str, worker: str) -> ModelCosts:
        learned = self._learned.get((worker, key))
        if learned is None:
            learned = self._borrowed(key, worker)
        if learned is None:
            factor = self._speed(worker)
            factor = factor if factor is not None else self.machine_factor()
            learned = ModelCosts.from_prior(self._prior(key)).scaled(factor)
        load = self._load(key, worker)
        return learned if load is None else replace(learned, load=load)

    def task_seconds(
        self, key: str, megapixels: float, steps: int, cached: bool, first_after_load: bool, worker: str = LOCAL
    ) -> float:
        return self.costs(key, worker).seconds(megapixels, steps, cached, first_after_load)

    def load_seconds(self, key: str, worker: str = LOCAL) -> float:
        return self.costs(key, worker).load

    def observations(self, key: str) -> int:
        return sum(len(history) for (_, model), history in self._history.items() if model == key)

    def record(self, timing: Timing) -> None:
        pair = (timing.worker, timing.key)
        with self._lock:
            self._history[pair].append(timing)
            self._learned[pair] = self._fit(*pair)
            self._learned_something()
        if self._persist is not None:
            self._persist(timing)

    def record_load(self, key: str, seconds: float, worker: str = LOCAL) -> None:
        if seconds <= 0:
            return
        pair = (worker, key)
        with self._lock:
            old = self._loads.get(pair)
            self._loads[pair] = seconds if old is None else old + LOAD_SMOOTHING * (seconds - old)
            if pair in self._learned:
                self._learned[pair] = replace(self._learned[pair], load=self._loads[pair])
            self._learned_something()
        if self._persist_load is not None:
            self._persist_load(key, seconds, worker)

    def machine_factor(self) -> float:
        """How much faster or slower than the priors the workers have been, on the models they ran (1: no idea)."""
        ratios = self._ratios(None)
        return statistics.median(ratios) if ratios else 1.0

    def worker_speed(self, worker: str) -> float | None:
        """This worker's measured speed against the priors (2: twice as slow), None before it ran anything."""
        return self._speed(worker)

    def _speed(self, worker: str) -> float | None:
        ratios = self._ratios(worker)
        return statistics.median(ratios) if ratios else None

    def _ratios(self, worker: str | None) -> list[float]:
        ratios = []
        for (on, key), learned in list(self._learned.items()):
            if learned.observed >= 2 and (worker is None or on == worker):
                guess = ModelCosts.from_prior(self._prior(key)).step_seconds(REFERENCE_MP)
                ratios.append(learned.step_seconds(REFERENCE_MP) / guess)
        return ratios

    def _borrowed(self, key: str, worker: str) -> ModelCosts | None:
        """The model as another worker learned it, at this worker's speed relative to that one's."""
        others = [(learned.observed, on, learned) for (on, model), learned in list(self._learned.items())
                  if model == key and on != worker and learned.observed >= 2]  # fmt: skip
        if not others:
            return None
        _, other, learned = max(others, key=lambda entry: entry[0])
        mine, theirs = self._speed(worker), self._speed(other)
        return learned.scaled(mine / theirs) if mine is not None and theirs else learned

    def _load(self, key: str, worker: str) -> float | None:
        if (worker, key) in self._loads:
            return self._loads[(worker, key)]
        measured = [seconds for (_, model), seconds in self._loads.items() if model == key]
        return statistics.median(measured) if measured else None

    def _prior(self, key: str) -> Prior:
        """The catalog's guess for a cost key; a quantized model ("dev@q8") starts from its model's."""
        return self._priors.get(key) or self._priors.get(key.split("@", 1)[0]) or self._generic_prior()

    def _fit(self, worker: str, key: str) -> ModelCosts:
        prior = ModelCosts.from_prior(self._prior(key))
        load = self._loads.get((worker, key))
        learned = learn(prior, list(self._history[(worker, key)]))
        return learned if load is None else replace(learned, load=load)

    def _generic_prior(self) -> Prior:
        return Prior(seconds_per_step_at_1mp=5.0, load_seconds=20.0)
