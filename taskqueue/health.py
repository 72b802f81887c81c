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
    loaded: tuple[str, ...] = ()  # the variants the workers hold loaded
    loading: str | None = None  # a variant being loaded now
    workers: int = 1  # workers known (this server's own, and those on other machines)
    workers_ready: int = 0
