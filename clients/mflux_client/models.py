"""The server's answers as small dataclasses, and how long to wait before asking again."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    model: str | None = None  # the model variant it runs on, e.g. "dev@q8" (None from a server without models)

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
            model=data.get("model"),
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
    model: str | None = None  # the model variant it runs on
    loading_model: str | None = None  # the model being loaded for it, or to be loaded before it runs

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
            model=data.get("model"),
            loading_model=data.get("loading_model"),
        )


@dataclass(frozen=True)
class ModelEntry:
    """One model of GET /api/ls: its defaults, what it takes, and its state on the server.

    `switch_seconds` is what a switch to it adds to a task's wait (0 when it is loaded). `raw` is the server's
    whole entry, for fields newer than this client.
    """

    name: str
    label: str
    kind: str  # text-to-image | edit | inpaint | upscale
    default_steps: int
    default_guidance: float | None = None
    guidance_adjustable: bool = True
    supports_negative_prompt: bool = False
    size_step: int = 16
    min_side: int | None = None
    max_side: int | None = None
    aliases: tuple[str, ...] = ()
    loader: str | None = None
    img2img: bool = False
    max_references: int = 0
    needs_image: bool = False
    takes_mask: bool = False
    offered: bool = True
    present: bool = True
    default: bool = False
    loaded: bool = False
    loading: bool = False
    load_error: str | None = None
    switch_seconds: float = 0.0
    memory_gb: float | None = None
    repo: str | None = None
    demo: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> ModelEntry:
        return cls(
            name=name,
            label=str(data.get("label") or name),
            kind=str(data.get("kind") or "text-to-image"),
            default_steps=int(data.get("steps") or 0),
            default_guidance=data.get("default_guidance"),
            guidance_adjustable=bool(data.get("guidance_adjustable", True)),
            supports_negative_prompt=bool(data.get("supports_negative_prompt", False)),
            size_step=int(data.get("size_step") or 16),
            min_side=data.get("min_side"),
            max_side=data.get("max_side"),
            aliases=tuple(data.get("aliases") or ()),
            loader=data.get("loader"),
            img2img=bool(data.get("img2img", False)),
            max_references=int(data.get("max_references") or 0),
            needs_image=bool(data.get("needs_image", False)),
            takes_mask=bool(data.get("takes_mask", False)),
            offered=bool(data.get("offered", True)),
            present=bool(data.get("present", True)),
            default=bool(data.get("default", False)),
            loaded=bool(data.get("loaded", False)),
            loading=bool(data.get("loading", False)),
            load_error=data.get("load_error"),
            switch_seconds=float(data.get("switch_seconds") or 0.0),
            memory_gb=data.get("memory_gb"),
            repo=data.get("repo"),
            demo=bool(data.get("demo", False)),
            raw=dict(data),
        )


@dataclass(frozen=True)
class LoadedModel:
    """What POST /api/load answered: the server's new default model, loaded."""

    model: str
    variant: str  # e.g. "dev@q8"
    quantize: int | None = None
    default_steps: int | None = None
    loaded: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadedModel:
        return cls(
            model=str(data["model"]),
            variant=str(data.get("variant") or data["model"]),
            quantize=data.get("quantize"),
            default_steps=data.get("default_steps"),
            loaded=bool(data.get("loaded", True)),
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
