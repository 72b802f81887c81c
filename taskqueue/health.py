"""Is the server well? One typed answer, composed from the worker's supervisor, the scheduler and the store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Health:
    ok: bool  # the worker is alive and its engine loaded or loading
    worker_alive: bool
    worker_pid: int | None
    model_loaded: bool
    engine: str
    model: str
    error: str | None  # why not ok
    worker_restarts: int
    waiting: int
    running: int
    loaded: tuple[str, ...] = ()  # the variants the worker holds loaded
    loading: str | None = None  # the variant it is loading now
