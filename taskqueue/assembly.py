"""Assembly: build the store, image files, forecaster, scheduler, status table and supervisor, and wire them.

The only module that knows how the parts fit; `build_service` hands back the façade the HTTP layer talks to.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from pathlib import Path

from taskqueue.changes import ChangeFeed
from taskqueue.forecast import HISTORY_SIZE, CostModel, Forecaster
from taskqueue.housekeeping import Housekeeper
from taskqueue.images import ImageFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.parts import Parts
from taskqueue.scheduler import Scheduler
from taskqueue.service import TaskService
from taskqueue.settings import ServiceSettings
from taskqueue.store import TaskStore
from taskqueue.waits import WaitTimes
from worker.engines.base import describe_engine
from worker.loop import WorkerSettings
from worker.status_table import StatusTable
from worker.supervisor import Supervisor


def assemble(settings: ServiceSettings) -> Parts:
    data_dir = settings.data_dir
    require_writable(data_dir)
    require_writable(data_dir / "images", "image directory")
    try:
        store = TaskStore(data_dir / "tasks.sqlite3")
    except sqlite3.Error as error:
        raise DataDirUnusable(f"cannot open the task database in {data_dir}: {error}") from error
    images = ImageFiles(data_dir / "images")
    info = describe_engine(settings.engine)
    engine_key = f"{info.name}:{info.model}"
    forecaster = Forecaster(
        CostModel.prior(info.seconds_per_step_at_1mp),
        store.observations(engine_key, HISTORY_SIZE),
        persist=lambda observation: store.add_observation(engine_key, observation),
    )
    metrics = QueueMetrics()
    changes = ChangeFeed()
    scheduler = Scheduler(store, images, forecaster, info, changes, metrics, settings.max_attempts)
    table = StatusTable(Supervisor.context())
    preview_path = data_dir / "preview.jpg"
    worker_settings = WorkerSettings(
        engine=settings.engine,
        preview_path=str(preview_path) if settings.previews else None,
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    supervisor = Supervisor(worker_settings, table, scheduler)
    scheduler.attach(supervisor)
    waits = WaitTimes(store, forecaster, changes, lambda: scheduler.state, table.snapshot)
    housekeeper = Housekeeper(store, images, changes, settings.storage, settings.housekeeping_interval)
    return Parts(
        settings, store, images, preview_path, forecaster, metrics, changes, scheduler, table, supervisor, waits,
        housekeeper,
    )  # fmt: skip


def build_service(settings: ServiceSettings) -> TaskService:
    return TaskService(assemble(settings))


class DataDirUnusable(OSError):
    """The data directory cannot hold the queue; raised at start-up, with the directory in the message."""


def require_writable(directory: Path, what: str = "data directory") -> None:
    """Fail at start-up, naming the directory, rather than failing every task later (or crash-looping)."""
    if directory.exists() and not directory.is_dir():
        raise DataDirUnusable(f"the {what} {directory} is not a directory")
    probe = directory / f".write-test-{secrets.token_hex(4)}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise DataDirUnusable(f"the {what} {directory} is not writable: {error.strerror or error}") from error
