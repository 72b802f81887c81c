"""Where a task's input images live: a folder per task in the data directory, written before the task is
queued and removed once it has ended (a restart re-runs an interrupted task with the same inputs). The task id
(16 hex digits, checked) is the only part of a path that comes from outside. The folders' total size is kept
as they change, for the storage limit, which they count towards."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from core.files import write_atomically
from core.tasks import is_task_id


class InputFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._bytes = sum(_size(folder) for folder in _folders(directory))

    def folder(self, task_id: str) -> Path:
        if not is_task_id(task_id):
            raise ValueError(f"not a task id: {task_id!r}")
        return self.directory / task_id

    def write(self, task_id: str, files: dict[str, bytes]) -> int:
        """Store a task's inputs (name → bytes); returns the bytes written."""
        folder = self.folder(task_id)
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            for name, data in files.items():
                write_atomically(folder / name, data)
                written += len(data)
        finally:
            with self._lock:
                self._bytes += written
        return written

    def delete(self, task_id: str) -> None:
        folder = self.folder(task_id)
        if not folder.exists():
            return
        size = _size(str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._bytes = max(self._bytes - size, 0)

    def stored_bytes(self) -> int:
        """The input folders' total size, as kept since the start."""
        return self._bytes

    def remove_orphans(self, keep: Iterable[str]) -> list[str]:
        """Delete the inputs of every task not in `keep` (forgotten ones, half-written ones)."""
        wanted = set(keep)
        removed = []
        for entry in os.scandir(self.directory):
            if entry.name not in wanted:
                size = _size(entry.path) if entry.is_dir() else entry.stat().st_size
                if entry.is_dir():
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                with self._lock:
                    self._bytes = max(self._bytes - size, 0)
                removed.append(entry.name)
        return removed


def _folders(directory: Path) -> list[str]:
    return [entry.path for entry in os.scandir(directory) if entry.is_dir()]


def _size(folder: str) -> int:
    try:
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    except FileNotFoundError:
        return 0
