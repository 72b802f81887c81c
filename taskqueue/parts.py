"""The assembled parts of the queue, as `assembly.assemble` builds them and `TaskService` uses them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from taskqueue.changes import ChangeFeed
from taskqueue.forecast import Forecaster
from taskqueue.housekeeping import Housekeeper
from taskqueue.images import ImageFiles
from taskqueue.metrics import QueueMetrics
from taskqueue.scheduler import Scheduler
from taskqueue.settings import ServiceSettings
from taskqueue.store import TaskStore
from taskqueue.waits import WaitTimes
from worker.status_table import StatusTable
from worker.supervisor import Supervisor


@dataclass(frozen=True)
class Parts:
    settings: ServiceSettings
    store: TaskStore
    images: ImageFiles
    preview_path: Path
    forecaster: Forecaster
    metrics: QueueMetrics
    changes: ChangeFeed
    scheduler: Scheduler
    table: StatusTable
    supervisor: Supervisor
    waits: WaitTimes
    housekeeper: Housekeeper
