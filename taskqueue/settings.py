"""What the queue is configured with: plain data, built once by server.py (or a test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.engines import EngineConfig
from core.rules import Limits
from taskqueue.housekeeping import StorageLimits
from taskqueue.planner import Fairness
from taskqueue.webhooks import WebhookSettings


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: Path
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: Limits = field(default_factory=Limits)
    storage: StorageLimits = field(default_factory=StorageLimits)
    fairness: Fairness = field(default_factory=Fairness)  # how far grouping by loaded model may reorder the queue
    housekeeping_interval: float = 60.0  # seconds between retention sweeps (the first runs at start)
    previews: bool = True
    max_attempts: int = 2  # runs of a task that keep killing the worker before it is failed
    log_prompts: bool = False
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    broker_url: str | None = None  # redis://…: workers on other machines take tasks too (taskqueue/remote_workers.py)
    local_worker: bool = True  # this server runs a worker itself
    hung_after_seconds: float = 60.0  # the watchdog's floor: slack beyond the forecast before a worker is hung
