"""How long will it take? The one place that knows.

The cost of a diffusion-transformer image is modelled as

    seconds = fixed + per_megapixel * MP + steps * (per_step + per_step_megapixel * MP + per_step_megapixel_sq * MP²)

`fixed` is the work before the denoising loop (prompt encoding), `per_megapixel` the work after it (VAE
decoding), and the per-step terms the transformer: linear layers grow with the number of latent tokens,
attention with its square. The model is linear in its five coefficients, so the cost of a whole queue is the
model applied to the *sum* of the tasks' feature vectors (`Workload`), which the store can add up in SQL.

Coefficients are learned from finished tasks by relative-error least squares, pulled towards a prior whose
level is first calibrated on the observations, so that a handful of same-sized tasks cannot produce a wild
model and a long history is not dominated by its biggest images. Everything here is pure: history and clock
come in as arguments.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from core.progress import LiveProgress
from core.tasks import MEGAPIXEL

HISTORY_SIZE = 200  # the newest finished tasks the model learns from
PRIOR_WEIGHT = 2.0  # how many observations' worth of trust the prior shape keeps


@dataclass(frozen=True)
class Workload:
    """One task, or the sum of many, in the units the cost model is linear in."""

    tasks: float = 0.0
    megapixels: float = 0.0
    steps: float = 0.0
    step_megapixels: float = 0.0
    step_megapixels_sq: float = 0.0

    @classmethod
    def of(cls, width: int, height: int, steps: int) -> Workload:
        mp = width * height / MEGAPIXEL
        return cls(1.0, mp, float(steps), steps * mp, steps * mp * mp)

    @classmethod
    def from_megapixels(cls, megapixels: float, steps: int) -> Workload:
        mp = megapixels
        return cls(1.0, mp, float(steps), steps * mp, steps * mp * mp)

    # Spelled out rather than through dataclasses.fields(): listing a page of 1,000 waiting tasks adds and
    # prices a workload per task, and the generic form was most of that page's cost.
    def vector(self) -> tuple[float, ...]:
        return (self.tasks, self.megapixels, self.steps, self.step_megapixels, self.step_megapixels_sq)

    def __add__(self, other: Workload) -> Workload:
        return Workload(
            self.tasks + other.tasks,
            self.megapixels + other.megapixels,
            self.steps + other.steps,
            self.step_megapixels + other.step_megapixels,
            self.step_megapixels_sq + other.step_megapixels_sq,
        )

    def __sub__(self, other: Workload) -> Workload:
        return Workload(
            self.tasks - other.tasks,
            self.megapixels - other.megapixels,
            self.steps - other.steps,
            self.step_megapixels - other.step_megapixels,
            self.step_megapixels_sq - other.step_megapixels_sq,
        )


@dataclass(frozen=True)
class CostModel:
    fixed: float
    per_megapixel: float
    per_step: float
    per_step_megapixel: float
    per_step_megapixel_sq: float

    def coefficients(self) -> tuple[float, ...]:
        return (self.fixed, self.per_megapixel, self.per_step, self.per_step_megapixel, self.per_step_megapixel_sq)

    def seconds(self, work: Workload) -> float:
        return (
            self.fixed * work.tasks
            + self.per_megapixel * work.megapixels
            + self.per_step * work.steps
            + self.per_step_megapixel * work.step_megapixels
            + self.per_step_megapixel_sq * work.step_megapixels_sq
        )

    def step_seconds(self, megapixels: float) -> float:
        return self.per_step + self.per_step_megapixel * megapixels + self.per_step_megapixel_sq * megapixels**2

    def after_loop_seconds(self, megapixels: float) -> float:
        return self.per_megapixel * megapixels

    def scaled(self, factor: float) -> CostModel:
        return CostModel(*(c * factor for c in self.coefficients()))

    @classmethod
    def prior(cls, seconds_per_step_at_1mp: float) -> CostModel:
        """A diffusion-transformer shaped guess from one figure: the time of one step at one megapixel."""
        s = seconds_per_step_at_1mp
        return cls(
            fixed=0.3 * s,
            per_megapixel=0.35 * s,
            per_step=0.03 * s,
            per_step_megapixel=0.72 * s,
            per_step_megapixel_sq=0.25 * s,
        )


@dataclass(frozen=True)
class Observation:
    """One finished task: its size, its steps and the seconds it held the engine."""

    megapixels: float
    steps: int
    seconds: float


# The workload the prior's trust is measured at: one megapixel, four steps.
_REFERENCE = Workload.from_megapixels(1.0, 4)


def fit(observations: Sequence[Observation], prior: CostModel, prior_weight: float = PRIOR_WEIGHT) -> CostModel:
    """The cost model that best explains `observations`, in relative error, without straying far from `prior`."""
    usable = [o for o in observations if o.seconds > 0 and o.megapixels > 0 and o.steps > 0]
    if not usable:
        return prior
    x = np.array([Workload.from_megapixels(o.megapixels, o.steps).vector() for o in usable])
    y = np.array([o.seconds for o in usable])
    prior_coef = np.array(prior.coefficients())

    # Calibrate the prior's level first (geometric mean ratio), then let the data reshape it.
    level = math.exp(float(np.mean(np.log(y / (x @ prior_coef)))))
    base = prior_coef * level

    # Rows of relative error: (x·c - y) / y. Penalty rows pull each coefficient towards the calibrated prior,
    # measured by how much it moves the reference prediction, relative to that prediction. The prior's weight
    # is shared among the coefficients: given whole to each, it counted as 5 × prior_weight observations, and
    # a history of 40 exact observations still left forecasts 12% (up to 27%) off (tests/test_queue_model.py).
    reference = np.array(_REFERENCE.vector())
    penalty_scale = math.sqrt(prior_weight / len(reference)) * reference / float(reference @ base)
    rows = np.vstack([x / y[:, None], np.diag(penalty_scale)])
    targets = np.concatenate([np.ones(len(y)), penalty_scale * base])
    return CostModel(*_nonnegative_least_squares(rows, targets))


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


def remaining_seconds(model: CostModel, work: Workload, live: LiveProgress | None, now: float) -> float:
    """Seconds until the task on the engine releases it, using its measured step times once it has some."""
    mp, steps = work.megapixels, int(work.steps)
    after_loop = model.after_loop_seconds(mp)
    if live is None:
        return model.seconds(work)
    if live.rendered_at is not None:
        return 0.0
    if live.loop_started_at is None:
        before_loop_left = max(model.fixed - (now - live.started_at), 0.0)
        return before_loop_left + steps * model.step_seconds(mp) + after_loop
    if live.steps_done == 0 or live.last_step_at is None:
        loop_left = max(steps * model.step_seconds(mp) - (now - live.loop_started_at), 0.0)
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
    """The learned cost model of the loaded engine, refitted as tasks finish; safe to share between threads."""

    def __init__(
        self,
        prior: CostModel,
        history: Iterable[Observation] = (),
        encode_rates: dict[str, float] | None = None,
        persist: Callable[[Observation], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._prior = prior
        self._history: deque[Observation] = deque(history, maxlen=HISTORY_SIZE)
        self._model = fit(list(self._history), prior)
        self.encode = EncodeRates(encode_rates)
        self._persist = persist

    @property
    def model(self) -> CostModel:
        return self._model

    @property
    def observation_count(self) -> int:
        return len(self._history)

    def record(self, observation: Observation) -> None:
        with self._lock:
            self._history.append(observation)
            self._model = fit(list(self._history), self._prior)
        if self._persist is not None:
            self._persist(observation)
