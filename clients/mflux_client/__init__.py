"""Python client for mflux-server: `MfluxClient` for programs, `mflux-client` (cli.py) for the shell."""

from __future__ import annotations

from mflux_client.client import DEFAULT_URL, ImageInput, MfluxClient
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
from mflux_client.models import LoadedModel, ModelEntry, Progress, Submission, TaskStatus, next_poll_delay

__all__ = [
    "DEFAULT_URL",
    "ImageInput",
    "ImageNotReady",
    "InvalidRequest",
    "LoadedModel",
    "MfluxClient",
    "MfluxError",
    "MfluxServerError",
    "ModelEntry",
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
