"""Domain errors: raised by the queue, turned into one status code each by every API's translation layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class QueueError(Exception):
    """Base class: `str(error)` is a message fit to show to the client."""


class InvalidRequest(QueueError):
    """The request breaks a rule; `problems` maps each offending field (GenerationRequest's names) to why."""

    def __init__(self, problems: Mapping[str, Sequence[str]]) -> None:
        self.problems = {field: list(messages) for field, messages in problems.items()}
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in self.problems.items()))


class TaskNotFound(QueueError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"No task with task_id {task_id!r}.")
        self.task_id = task_id


class ImageNotAvailable(QueueError):
    """The task exists but has no image to hand out (not finished yet, failed, or already fetched)."""

    def __init__(self, task_id: str, status: str, reason: str) -> None:
        super().__init__(reason)
        self.task_id = task_id
        self.status = status


class QueueFull(QueueError):
    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class EngineUnavailable(QueueError):
    """The engine could not be loaded; new work is refused with the reason and how to fix it."""


class NotPermitted(QueueError):
    """The caller's key may not do this (a user key changing what every client gets)."""


class StorageUnavailable(QueueError):
    """The data directory cannot be read or written right now (disk full, unmounted, replaced)."""
