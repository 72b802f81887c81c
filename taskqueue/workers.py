"""What each worker is doing, for GET /api/workers and /metrics: the scheduler's workers (this server's own and
those on other machines), and the remote ones it has let go of or refused, with why."""

from __future__ import annotations

from dataclasses import dataclass

from taskqueue.forecast import Forecaster
from taskqueue.remote_workers import RemoteWorkers
from taskqueue.scheduler import Scheduler


@dataclass(frozen=True)
class WorkerListing:
    name: str
    remote: bool
    host: str
    engine: str
    state: str  # ready, busy, loading, starting, lost, refused, failed
    warm: tuple[str, ...]
    loading: str | None
    task_id: str | None
    tasks_done: int
    speed: float | None  # measured seconds against the catalog's priors (2.0: twice as slow); None: not yet
    last_heartbeat: float | None  # Unix time (remote workers)
    since: float
    error: str | None
    version: str = ""
    step: int | None = None  # the current task's denoising steps done, and of how many (None: no task)
    steps: int | None = None


def listings(scheduler: Scheduler, forecaster: Forecaster, remote: RemoteWorkers | None) -> list[WorkerListing]:
    records = {record.name: record for record in remote.records()} if remote is not None else {}
    found = []
    for state in scheduler.workers():
        record = records.pop(state.name, None)
        if state.engine_error:
            status = "failed"
        elif not state.ready:
            status = "starting"
        elif state.loading:
            status = "loading"
        else:
            status = "busy" if state.busy else "ready"
        live = scheduler.live(state.name) if state.task else None
        live = live if live is not None and live.task_id == state.task.id else None
        found.append(WorkerListing(
            name=state.name, remote=state.remote, host=state.host, engine=state.engine, state=status,
            warm=state.warm, loading=state.loading[0] if state.loading else None,
            task_id=state.task.id if state.task else None, tasks_done=state.done,
            speed=forecaster.worker_speed(state.name), since=state.since, error=state.engine_error,
            last_heartbeat=record.last_heartbeat if record else None, version=record.version if record else "",
            step=live.steps_done if live else None, steps=live.steps if live else None,
        ))  # fmt: skip
    found += [  # gone or refused: shown with why
        WorkerListing(
            name=record.name, remote=True, host=record.host, engine=record.engine, state=record.state, warm=(),
            loading=None, task_id=None, tasks_done=0, speed=forecaster.worker_speed(record.name),
            last_heartbeat=record.last_heartbeat, since=record.since, error=record.error, version=record.version,
        )
        for record in records.values()
    ]  # fmt: skip
    return found
