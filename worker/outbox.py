"""The worker's way back to the server: one pipe, shared by the engine's thread and the encoder's."""

from __future__ import annotations

import logging
import threading
from multiprocessing.connection import Connection

from worker.protocol import FromWorker, Log


class Outbox:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: FromWorker) -> None:
        with self._lock:
            self._connection.send(message)


class OutboxLogHandler(logging.Handler):
    """Log records travel to the server as `Log` messages; the server's logging configuration formats them."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._outbox.send(Log(record.levelno, record.getMessage(), getattr(record, "task_id", None)))
        except (OSError, ValueError):
            pass  # the server is gone; nobody is listening
