"""The server's answers as small dataclasses, and how long to wait before asking again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FINAL_STATUSES = frozenset({"done", "failed", "cancelled"})


@dataclass(frozen=True)
class Submission:
    """What POST /api/generate answered: the task id, the forecast, and the parameters actually used."""

    task_id: str
    task_length: int
    expected_time_seconds: float
    seed: int
    width: int
    height: int
    steps: int
    guidance: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Submission:
        return cls(
            task_id=str(data["task_id"]),
            task_length=int(data.get("task_length", 0)),
            expected_time_seconds=float(data.get("expected_time_seconds", 0.0)),
            seed=int(data["seed"]),
            width=int(data["width"]),
            height=int(data["height"]),
            steps=int(data["steps"]),
            guidance=data.get("guidance"),
        )


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int

    @property
    def fraction(self) -> float:
        return self.step / self.steps if self.steps else 0.0


@dataclass(frozen=True)
class TaskStatus:
    """What GET /api/status answered."""

    task_id: str
    status: str  # waiting | running | done | failed | cancelled
    pos: int = 0
    wait_remaining: float = 0.0
    progress: Progress | None = None
    error: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any], task_id: str = "") -> TaskStatus:
        progress = data.get("progress")
        return cls(
            task_id=str(data.get("task_id") or task_id),
            status=str(data["status"]),
            pos=int(data.get("pos") or 0),
            wait_remaining=float(data.get("wait_remaining") or 0.0),
            progress=Progress(int(progress["step"]), int(progress["steps"])) if progress else None,
            error=data.get("error"),
        )


def next_poll_delay(status: TaskStatus) -> float:
    """Seconds to sleep before asking again, following the server's forecast.

    A waiting task is asked about a few times over its forecast (never more often than 5 times a second,
    never less than every 5 s, so a forecast that shrinks as the queue moves is noticed); a running one about
    twice a second, sooner if it is about to finish.
    """
    if status.status == "running":
        return _clamp(status.wait_remaining / 2, 0.1, 0.5)
    return _clamp(status.wait_remaining / 3, 0.2, 5.0)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
