"""The watchdog: a worker that stops making progress is hung (a GPU driver hang, a deadlock, a paused process);
it is killed and started again (a worker on another machine: declared lost), and its task is treated as after a
crash — run once more, then failed.

"No progress" is judged phase by phase against the forecast: a worker that holds a task must reach its next mark
(the task started; the denoising loop begun; each step; the pixels done) within `SLACK` times what the forecaster
expects that phase to take, plus a floor (`--hung-after-seconds`, 60 by default) for what no forecast knows — a
first compile, a slow disk. A load must finish within `SLACK` times its expected time plus the floor. A worker
that is told to stop a task and does not within the floor is hung too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from taskqueue.forecast import Forecaster
from taskqueue.scheduler import Scheduler, WorkerState

log = logging.getLogger("taskqueue")

SLACK = 3.0  # times the forecast a phase may take before the worker counts as hung
CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Hang:
    worker: str
    reason: str
    at: float


class Watchdog:
    def __init__(
        self,
        scheduler: Scheduler,
        forecaster: Forecaster,
        floor_seconds: float,
        on_hung: Callable[[str, str], None],
        each_beat: Sequence[Callable[[], None]] = (),
    ) -> None:
        self._scheduler = scheduler
        self._forecaster = forecaster
        self.floor = floor_seconds
        self._on_hung = on_hung  # (worker name, reason): kill and restart it, or let it go (remote)
        self._each_beat = each_beat  # other repairs on the same beat (a full disk's backlog, a removed directory)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._fired: dict[str, float] = {}  # worker → when it was last declared hung (not twice for one hang)
        self.last_hang: Hang | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            for step in (lambda: self.check(time.time()), *self._each_beat):
                try:
                    step()
                except Exception:
                    log.exception("the watchdog's beat failed")

    def check(self, now: float) -> list[Hang]:
        """Declare hung every worker past its bound; returns the hangs found (for tests)."""
        found = []
        for state in self._scheduler.workers():
            reason = self.overdue(state, now)
            if reason is None:
                self._fired.pop(state.name, None)
                continue
            if state.name in self._fired:
                continue  # already declared; its restart is under way
            self._fired[state.name] = now
            hang = Hang(state.name, reason, now)
            self.last_hang = hang
            found.append(hang)
            log.error("worker %s is hung: %s; restarting it", state.name, reason)
            self._on_hung(state.name, reason)
        return found

    def overdue(self, state: WorkerState, now: float) -> str | None:
        """Why this worker counts as hung now, or None."""
        if state.loading is not None and state.task is None:
            key, since = state.loading
            return self._past("loading " + key, now - since, self._load_seconds(key, state.name))
        task = state.task
        if task is None:
            return None
        if state.stopping_since is not None:
            return self._past("stopping its task when asked", now - state.stopping_since, 0.0)
        costs = self._forecaster.costs(task.variant.cost_key, state.name)
        params = task.params
        live = self._scheduler.live(state.name)
        live = live if live is not None and live.task_id == task.id else None
        if state.loading is not None:
            key, since = state.loading
            return self._past("loading " + key, now - since, self._load_seconds(key, state.name))
        if live is None:
            return self._past("starting its task", now - state.busy_since, costs.before_loop(False))
        if live.rendered_at is not None:
            return None  # the engine is done with it; encoding is watched by its own messages
        step = costs.step_seconds(params.work_megapixels) * (costs.warmup if state.task_first else 1.0)
        if live.loop_started_at is None:
            return self._past("encoding the prompt", now - live.started_at, costs.before_loop(False) + step)
        if live.steps_done < live.steps:
            measured = live.step_seconds
            expected = max(step, measured) if measured is not None else step
            last = live.last_step_at or live.loop_started_at
            return self._past(f"step {live.steps_done + 1} of {live.steps}", now - last, expected)
        return self._past("decoding", now - (live.last_step_at or live.loop_started_at),
                          costs.after_loop(params.megapixels))  # fmt: skip

    def shutdown_grace(self, name: str, cap: float) -> float:
        """How long to wait, at shutdown, for a worker to leave its task at the next step: that step's expected
        time with slack (a hung worker then holds the shutdown seconds, not half a minute), at most `cap`."""
        state = self._scheduler.worker(name)
        if state is None or state.task is None:
            return cap
        costs = self._forecaster.costs(state.task.variant.cost_key, name)
        step = costs.step_seconds(state.task.params.work_megapixels)
        return min(cap, SLACK * max(step, costs.after_loop(state.task.params.megapixels)) + 5.0)

    def _past(self, doing: str, seconds: float, expected: float) -> str | None:
        bound = SLACK * expected + self.floor
        if seconds <= bound:
            return None
        return f"no progress {doing} for {seconds:.0f} s (expected {expected:.1f} s; it may take {bound:.0f} s)"

    def _load_seconds(self, variant: str, worker: str) -> float:
        return self._forecaster.load_seconds(variant.split("+", 1)[0], worker)
