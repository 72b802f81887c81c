"""Typed exceptions: every error the server answers with becomes one of these, carrying the server's message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mflux_client.models import TaskStatus


class MfluxError(Exception):
    """Base class of everything this client raises on purpose."""


class MfluxServerError(MfluxError):
    """The server answered with an error (or could not be reached: `status_code` is None then).

    `message` is the server's own JSON `message`, which names the offending field for invalid requests;
    `payload` is the whole JSON error body (`{code, status, message, errors}`), or {} if it was not JSON.
    """

    def __init__(self, message: str, status_code: int | None = None, payload: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.payload = payload or {}

    @property
    def errors(self) -> dict[str, Any]:
        """Per-field validation errors, e.g. `{"json": {"width": ["Must be between …"]}}`."""
        return self.payload.get("errors") or {}

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}" if self.status_code else self.message


class TaskNotFound(MfluxServerError):
    """404: the server knows no task with this id."""


class ImageNotReady(MfluxServerError):
    """404 from /api/image: the task has no image (yet, or any more); `task_status` tells which."""

    @property
    def task_status(self) -> str | None:
        return self.payload.get("task_status")


class InvalidRequest(MfluxServerError):
    """400/422: the parameters were refused; the message names the field."""


class QueueFull(MfluxServerError):
    """429: too many waiting tasks; try again after `retry_after` seconds (None if the server did not say)."""

    def __init__(self, message: str, status_code: int | None = None, payload: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:  # fmt: skip
        super().__init__(message, status_code, payload)
        self.retry_after = retry_after


class Unauthorized(MfluxServerError):
    """401/403: the server wants an API key (`MfluxClient(api_key=...)`) or refused the one given."""


class ServerUnavailable(MfluxServerError):
    """503, or the server could not be reached at all (`status_code` None)."""


class TaskEnded(MfluxError):
    """A task that `wait` followed ended without an image."""

    def __init__(self, message: str, status: TaskStatus) -> None:
        super().__init__(message)
        self.status = status
        self.task_id = status.task_id


class TaskFailed(TaskEnded):
    """The engine failed on the task; `error` is the server's reason."""

    @property
    def error(self) -> str | None:
        return self.status.error


class TaskCancelled(TaskEnded):
    """The task was cancelled (by this client, another one, or /api/clear)."""


class WaitTimeout(MfluxError, TimeoutError):
    """`wait` gave up; the task goes on on the server (cancel it if it is no longer wanted)."""

    def __init__(self, task_id: str, timeout: float, last: TaskStatus | None) -> None:
        super().__init__(f"task {task_id} not done after {timeout:g} s")
        self.task_id = task_id
        self.timeout = timeout
        self.last = last
