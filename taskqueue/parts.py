"""The assembled parts of the queue, as `assembly.assemble` builds them and `TaskService` uses them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.models import Catalog
from taskqueue.changes import ChangeFeed
from taskqueue.forecast import Forecaster
from taskqueue.housekeeping import Housekeeper
from taskqueue.images import ImageFiles
from taskqueue.inputs import InputFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.remote_workers import RemoteWorkers
from taskqueue.scheduler import Scheduler
from taskqueue.settings import ServiceSettings
from taskqueue.store import TaskStore
from taskqueue.waits import WaitTimes
from taskqueue.watchdog import Watchdog
from taskqueue.webhooks import WebhookSender
from worker.status_table import StatusTable
from worker.supervisor import Supervisor


@dataclass(frozen=True)
class Parts:
    settings: ServiceSettings
    catalog: Catalog
    loras: dict[str, Path]  # the LoRA library: name → file
    store: TaskStore
    images: ImageFiles
    inputs: InputFiles
    preview_path: Path
    forecaster: Forecaster
    metrics: QueueMetrics
    changes: ChangeFeed
    scheduler: Scheduler
    table: StatusTable
    supervisor: Supervisor
    waits: WaitTimes
    housekeeper: Housekeeper
    webhooks: WebhookSender
    remote: RemoteWorkers | None = None  # workers on other machines, with --broker
    watchdog: Watchdog | None = None
