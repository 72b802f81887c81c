"""Assembly: build the catalog, store, files, forecaster, scheduler, status table and supervisor, and wire them.

The only module that knows how the parts fit; `build_service` hands back the façade the HTTP layer talks to.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from pathlib import Path

from core import rules
from core.engines import EngineConfig
from core.models import Catalog, Lora, Variant
from taskqueue.changes import ChangeFeed
from taskqueue.forecast import HISTORY_SIZE, LOCAL, Forecaster, Prior
from taskqueue.housekeeping import Housekeeper
from taskqueue.images import ImageFiles
from taskqueue.inputs import InputFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.parts import Parts
from taskqueue.remote_workers import RemoteWorkers
from taskqueue.scheduler import Scheduler
from taskqueue.service import TaskService
from taskqueue.settings import ServiceSettings
from taskqueue.store import TaskStore
from taskqueue.waits import WaitTimes
from taskqueue.watchdog import Watchdog
from taskqueue.webhooks import WebhookSender
from worker.engines.base import EngineLoadError, engine_catalog
from worker.engines.loras import discover, library_folders
from worker.loop import WorkerSettings
from worker.status_table import StatusTable
from worker.supervisor import Supervisor

log = logging.getLogger("taskqueue")


class StartupError(Exception):
    """The server cannot start with this configuration; the message says why and how to fix it."""


def assemble(settings: ServiceSettings) -> Parts:
    data_dir = settings.data_dir
    require_writable(data_dir)
    require_writable(data_dir / "images", "image directory")
    try:
        catalog = engine_catalog(settings.engine)
    except EngineLoadError as error:
        raise StartupError(str(error)) from error
    try:
        store = TaskStore(data_dir / "tasks.sqlite3")
    except sqlite3.Error as error:
        raise DataDirUnusable(f"cannot open the task database in {data_dir}: {error}") from error
    images = ImageFiles(data_dir / "images")
    inputs = InputFiles(data_dir / "inputs")
    default = default_variant(settings.engine, catalog)
    if problem := rules.default_model_problem(catalog.get(default.model)):
        raise StartupError(f"--model {default.model}: {problem}")
    if adopted := store.adopt_unassigned(default):
        log.info("%d task(s) from before models were chosen per task will run %s", adopted, default.key)
    priors = {model.name: Prior(model.seconds_per_step_at_1mp, model.load_seconds) for model in catalog.models}
    priors[default.cost_key] = priors[default.model]
    forecaster = Forecaster(
        priors, store.timings(HISTORY_SIZE), store.loads(), persist=store.add_timing, persist_load=store.add_load
    )
    metrics, changes = QueueMetrics(), ChangeFeed()
    scheduler = Scheduler(
        store, images, inputs, forecaster, changes, metrics, default, fairness=settings.fairness,
        max_attempts=settings.max_attempts, max_loaded=settings.engine.max_loaded_models,
    )  # fmt: skip
    table = StatusTable(Supervisor.context())
    preview_path = data_dir / "preview.jpg"
    worker_settings = WorkerSettings(
        engine=settings.engine,
        preview_path=str(preview_path) if settings.previews else None,
        log_level=logging.getLogger().getEffectiveLevel(),
        log_levels=configured_levels(),
    )
    supervisor = Supervisor(worker_settings, table, scheduler)
    if settings.local_worker:
        scheduler.attach(supervisor, LOCAL, table)
    waits = WaitTimes(
        store, forecaster, changes, scheduler.workers, scheduler.live, settings.fairness,
        settings.engine.max_loaded_models,
    )  # fmt: skip
    housekeeper = Housekeeper(store, images, changes, settings.storage, settings.housekeeping_interval, inputs)
    scheduler.on_image_stored = housekeeper.enforce_storage
    loras = discover(library_folders(settings.engine.lora_dirs))
    remote = RemoteWorkers(settings.broker_url, scheduler, store, images, inputs) if settings.broker_url else None

    def hung(name: str, reason: str) -> None:  # the watchdog's verdict: the local worker restarts, others go
        if name == LOCAL:
            supervisor.kill_hung(reason)
        elif remote is not None:
            remote.declare_lost(name, f"hung: {reason}")

    watchdog = Watchdog(scheduler, forecaster, settings.hung_after_seconds, hung,
                        each_beat=(scheduler.retry_deferred, images.ensure_directory))  # fmt: skip
    return Parts(
        settings, catalog, loras, store, images, inputs, preview_path, forecaster, metrics, changes, scheduler,
        table, supervisor, waits, housekeeper, WebhookSender(store, changes, settings.webhooks), remote, watchdog,
    )  # fmt: skip


def default_variant(config: EngineConfig, catalog: Catalog) -> Variant:
    """The model loaded at start, as the operator configured it: quantization, LoRA files, local weights."""
    loras = tuple(
        Lora(Path(path).stem, str(Path(path).expanduser()), scale)
        for path, scale in zip(config.lora_paths, config.lora_scales or [1.0] * len(config.lora_paths), strict=True)
    )
    return Variant(catalog.default, config.quantize, loras, config.path)


def configured_levels() -> tuple[tuple[str, int], ...]:
    """The levels this process's logging set-up gave named loggers (server.py), for the worker to log alike."""
    loggers = logging.Logger.manager.loggerDict.items()
    return tuple((name, each.level) for name, each in loggers if isinstance(each, logging.Logger) and each.level)


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
