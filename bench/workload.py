"""Seeded workloads, a driver that plays one against a server, and the accuracy of the server's forecasts.

Shared by the forecast benchmark (bench/forecast_accuracy.py, demo engine) and the Mac script
(bench/mac_mflux.py, real mflux), so what runs here exercises what users run there.

The driver submits each task at its time (or keeps a number of tasks waiting), records the forecast it was
given (`expected_time_seconds`), samples `wait_remaining` of every unfinished task through its wait, and at
the end reads the server's own submission and completion times from `/api/tasks`.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

from bench.harness import Api
from bench.stats import absolute_percentage_error

PROMPTS = (
    "a lighthouse on a cliff at dusk, oil painting",
    "a red fox in fresh snow, telephoto photograph",
    "an isometric city block made of paper",
    "a bowl of ramen, studio lighting, top view",
    "a foggy pine forest with a single cabin",
    "portrait of an old sailor, charcoal sketch",
    "a tiny robot watering a bonsai tree",
    "a neon-lit street market in the rain",
)


@dataclass(frozen=True)
class TaskSpec:
    index: int
    prompt: str
    seed: int
    width: int
    height: int
    steps: int
    priority: bool = False
    at: float = 0.0  # seconds after the start of the run when it is submitted
    cancel_after: float | None = None  # cancelled this long after its submission (if it has not ended)
    model: str | None = None  # None: the server's default

    def body(self) -> dict:
        body = {
            "prompt": self.prompt,
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "priority": self.priority,
            "format": "JPEG",
        }
        return body | ({"model": self.model} if self.model else {})

    @property
    def megapixels(self) -> float:
        return self.width * self.height / (1024 * 1024)


def mixed_workload(
    count: int,
    seed: int,
    sides: Sequence[int] = tuple(range(256, 1537, 128)),
    steps: tuple[int, int] = (1, 8),
    priority_share: float = 0.1,
    cancel_one: bool = True,
    mean_gap: float = 0.0,
) -> list[TaskSpec]:
    """`count` tasks of independent random widths and heights (non-square too) and step counts.

    Arrivals are a Poisson process with `mean_gap` seconds between submissions on average (0: all at once).
    Some tasks ask for priority; one task in the second half is cancelled a second after it is submitted.
    """
    rng = random.Random(seed)
    at = 0.0
    tasks = []
    cancelled = rng.randrange(count // 2, count) if cancel_one and count >= 4 else None
    for index in range(count):
        if index and mean_gap > 0:
            at += rng.expovariate(1.0 / mean_gap)
        tasks.append(
            TaskSpec(
                index=index,
                prompt=rng.choice(PROMPTS),
                seed=rng.randrange(2**31),
                width=rng.choice(sides),
                height=rng.choice(sides),
                steps=rng.randint(*steps),
                priority=index > 0 and rng.random() < priority_share,
                at=at,
                cancel_after=1.0 if index == cancelled else None,
            )
        )
    return tasks


@dataclass
class Submitted:
    spec: TaskSpec
    task_id: str
    sent_at: float  # client clock, just before the POST
    expected: float  # expected_time_seconds in the answer
    phase: int  # which server run took it (the forecast benchmark restarts the server once)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (client time, wait_remaining)
    cancel_requested: bool = False
    status: str = "waiting"  # as last polled
    final: bool = False  # done, failed or cancelled


@dataclass(frozen=True)
class Outcome:
    """A finished task: what was forecast and what happened, in seconds."""

    spec: TaskSpec
    task_id: str
    phase: int
    status: str
    expected: float
    actual: float  # from its submission to its stored image, by the server's clock
    started: float  # server timestamps (Unix time)
    rendered: float | None
    ended: float
    sample_errors: tuple[float, ...]  # absolute percentage errors of the wait_remaining samples that count
    model: str = ""  # the variant it ran on

    @property
    def error(self) -> float:
        return absolute_percentage_error(self.expected, self.actual)

    @property
    def engine_seconds(self) -> float | None:
        return None if self.rendered is None else self.rendered - self.started


class Driver:
    """Plays tasks against a server and watches them; `switch` moves it to a restarted server."""

    def __init__(self, url: str, sample_interval: float = 0.25, min_remaining: float = 1.0) -> None:
        self.api = Api(url)
        self.sample_interval = sample_interval
        self.min_remaining = min_remaining  # samples closer to the end than this are not scored
        self.submitted: list[Submitted] = []
        self.phase = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="wait-sampler", daemon=True)

    # -- submitting --------------------------------------------------------------------------------------

    def submit(self, spec: TaskSpec) -> Submitted:
        sent = time.time()
        answer = self.api.generate(spec.body())
        item = Submitted(spec, answer["task_id"], sent, answer["expected_time_seconds"], self.phase)
        with self._lock:
            self.submitted.append(item)
        return item

    def play(self, specs: Sequence[TaskSpec], began: float) -> None:
        """Submit each task at `began + spec.at` (monotonic clock), and cancel those meant to be cancelled."""
        pending = sorted(specs, key=lambda s: s.at)
        while pending:
            self._cancel_due()
            wait = began + pending[0].at - time.monotonic()
            if wait <= 0:
                self.submit(pending.pop(0))
            else:
                time.sleep(min(wait, 0.05))  # an arrival schedule, not synchronisation

    def keep_fed(self, specs: Sequence[TaskSpec], waiting: int = 2, poll: float = 0.05) -> None:
        """Submit the tasks in order, keeping `waiting` of them queued, so the engine never runs dry.

        Goes by the statuses the sampler sees: call `start_sampling` first.
        """
        for spec in specs:
            while sum(1 for item in self._unfinished() if item.status == "waiting") >= waiting:
                time.sleep(poll)
            self.submit(spec)

    def _cancel_due(self) -> None:
        with self._lock:
            due = [i for i in self.submitted if i.spec.cancel_after is not None and not i.cancel_requested]
        for item in due:
            if time.time() >= item.sent_at + item.spec.cancel_after:
                self.api.cancel(item.task_id)
                item.cancel_requested = True

    def switch(self, url: str) -> None:
        """Carry on against a restarted server (same data directory, new port)."""
        self.api = Api(url)
        self.phase += 1
        self._paused.clear()

    def pause_sampling(self) -> None:
        self._paused.set()

    # -- watching ----------------------------------------------------------------------------------------

    def start_sampling(self) -> None:
        self._sampler.start()

    def _unfinished(self) -> list[Submitted]:
        with self._lock:
            return [i for i in self.submitted if not i.final]

    def _sample(self) -> None:
        while not self._stop.wait(self.sample_interval):
            if self._paused.is_set():
                continue
            for item in self._unfinished():
                try:
                    before = time.time()
                    answer = self.api.status(item.task_id)
                    at = (before + time.time()) / 2
                except requests.RequestException:
                    break  # the server is restarting; try again next round
                item.status = answer["status"]
                if item.status in ("waiting", "running"):
                    item.samples.append((at, answer["wait_remaining"]))
                else:
                    item.final = True

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._unfinished():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._unfinished())} task(s) unfinished after {timeout:.0f} s")
            self._cancel_due()
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join(5)

    # -- results -----------------------------------------------------------------------------------------

    def outcomes(self) -> list[Outcome]:
        """Every submitted task with the server's own times; cancelled ones are left out."""
        wanted = {i.task_id: i for i in self.submitted}
        found = {t["task_id"]: t for t in self.api.all_tasks() if t["task_id"] in wanted}
        result = []
        for item in self.submitted:
            task = found.get(item.task_id)
            if task is None or task["status"] != "done":
                continue
            ended, submitted = task["end_time"], task["start_time"]
            errors = tuple(
                absolute_percentage_error(remaining, ended - at)
                for at, remaining in item.samples
                if ended - at >= self.min_remaining
            )
            result.append(
                Outcome(
                    item.spec, item.task_id, item.phase, task["status"], item.expected, ended - submitted,
                    task["compute_time"], task.get("render_end_time"), ended, errors, task.get("model", ""),
                )
            )  # fmt: skip
        return result

    def cancelled(self) -> list[str]:
        """The tasks the server reports cancelled (a cancellation that came after the image is not one)."""
        wanted = {i.task_id for i in self.submitted if i.cancel_requested}
        return [t["task_id"] for t in self.api.all_tasks(("cancelled",)) if t["task_id"] in wanted]


@dataclass(frozen=True)
class Accuracy:
    """Forecast errors over a group of tasks, as fractions (0.1 = 10 %)."""

    tasks: int
    expected_mape: float  # expected_time_seconds at submission vs submission-to-image
    remaining_mape: float  # wait_remaining samples: mean per task, then over tasks
    samples: int
    worst: float

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Accuracy:
        if not outcomes:
            return cls(0, math.nan, math.nan, 0, math.nan)
        errors = [o.error for o in outcomes]
        per_task = [sum(o.sample_errors) / len(o.sample_errors) for o in outcomes if o.sample_errors]
        return cls(
            len(outcomes),
            sum(errors) / len(errors),
            sum(per_task) / len(per_task) if per_task else math.nan,
            sum(len(o.sample_errors) for o in outcomes),
            max(errors),
        )
