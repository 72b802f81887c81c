"""Python client for mflux-server: `MfluxClient` for programs, `mflux-client` (cli.py) for the shell."""

from __future__ import annotations

from mflux_client.client import DEFAULT_URL, MfluxClient
from mflux_client.errors import (
    ImageNotReady,
    InvalidRequest,
    MfluxError,
    MfluxServerError,
    QueueFull,
    ServerUnavailable,
    TaskCancelled,
    TaskEnded,
    TaskFailed,
    TaskNotFound,
    Unauthorized,
    WaitTimeout,
)
from mflux_client.models import Progress, Submission, TaskStatus, next_poll_delay

__all__ = [
    "DEFAULT_URL",
    "ImageNotReady",
    "InvalidRequest",
    "MfluxClient",
    "MfluxError",
    "MfluxServerError",
    "Progress",
    "QueueFull",
    "ServerUnavailable",
    "Submission",
    "TaskCancelled",
    "TaskEnded",
    "TaskFailed",
    "TaskNotFound",
    "TaskStatus",
    "Unauthorized",
    "WaitTimeout",
    "next_poll_delay",
]
