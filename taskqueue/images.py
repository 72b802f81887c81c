"""Where finished images live: one file per task in the data directory, never in the server's memory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from core.tasks import ImageFormat, is_task_id


class ImageFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, task_id: str, image_format: ImageFormat) -> Path:
        # The id pattern is the only thing standing between a client's string and the file system.
        if not is_task_id(task_id):
            raise ValueError(f"not a task id: {task_id!r}")
        return self.directory / f"{task_id}.{image_format.extension}"

    def read(self, task_id: str, image_format: ImageFormat) -> bytes | None:
        try:
            return self.path(task_id, image_format).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, task_id: str, image_format: ImageFormat) -> None:
        self.path(task_id, image_format).unlink(missing_ok=True)

    def stored_bytes(self) -> int:
        return sum(entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file())

    def remove_orphans(self, keep: Iterable[tuple[str, ImageFormat]]) -> list[str]:
        """Delete every file that is not the image of a task in `keep` (half-written or forgotten ones)."""
        wanted = {self.path(task_id, image_format).name for task_id, image_format in keep}
        removed = []
        for entry in os.scandir(self.directory):
            if entry.is_file() and entry.name not in wanted:
                os.unlink(entry.path)
                removed.append(entry.name)
        return removed
