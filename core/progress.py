"""What the worker reports about the task on its engine right now: written by the worker, read by the queue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LiveProgress:
    task_id: str
    started_at: float  # Unix time the engine took the task
    steps: int  # denoising steps that will really run
    steps_done: int
    loop_started_at: float | None = None  # None while the prompt is being encoded
    last_step_at: float | None = None
    rendered_at: float | None = None  # the pixels exist; the engine is free (encoding runs beside it)
    preview_count: int = 0

    @property
    def step_seconds(self) -> float | None:
        """The mean time of one denoising step so far (previews included), or None before the first."""
        if self.loop_started_at is None or self.last_step_at is None or self.steps_done == 0:
            return None
        return (self.last_step_at - self.loop_started_at) / self.steps_done
