"""Where finished images live: one file per task in the data directory, never in the server's memory."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from core.tasks import ImageFormat, is_task_id

log = logging.getLogger("taskqueue")


class ImageFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, task_id: str, image_format: ImageFormat) -> Path:
        # The id pattern is the only thing standing between a client's string and the file system.
        if not is_task_id(task_id):
            raise ValueError(f"not a task id: {task_id!r}")
        return self.directory / f"{task_id}.{image_format.extension}"

    def problem(self) -> str | None:
        """What is wrong with the directory itself (removed, or something else in its place), for health."""
        if self.directory.is_dir():
            return None
        what = "is not a directory" if self.directory.exists() else "is missing"
        return f"the images directory {self.directory} {what}"

    def ensure_directory(self) -> None:
        """Make the directory again if it was removed under the running server (called every second)."""
        if self.directory.exists():
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            log.error("the images directory %s is missing and cannot be made again: %s", self.directory, error)
        else:
            log.warning("the images directory %s was removed while the server ran; made it again", self.directory)

    def read(self, task_id: str, image_format: ImageFormat) -> bytes | None:
        """The image, or None if its file is gone; OSError if the directory itself is (not: "already fetched")."""
        try:
            return self.path(task_id, image_format).read_bytes()
        except FileNotFoundError:
            if (problem := self.problem()) is not None:
                raise OSError(problem) from None
            return None

    def delete(self, task_id: str, image_format: ImageFormat) -> None:
        self.path(task_id, image_format).unlink(missing_ok=True)

    def stored_bytes(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file())

    def remove_orphans(self, keep: Iterable[tuple[str, ImageFormat]]) -> list[str]:
        """Delete every file that is not the image of a task in `keep` (half-written or forgotten ones)."""
        wanted = {self.path(task_id, image_format).name for task_id, image_format in keep}
        removed: list[str] = []
        if not self.directory.is_dir():
            return removed
        for entry in os.scandir(self.directory):
            if entry.is_file() and entry.name not in wanted:
                os.unlink(entry.path)
                removed.append(entry.name)
        return removed
