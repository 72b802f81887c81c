"""Keeps one worker process alive: spawns it, relays its messages, notices its death and starts another.

The supervisor knows nothing about tasks. It hands every message and every exit to `WorkerEvents` (the
scheduler), which decides what they mean for the queue.
A worker that dies before `Ready` twice in a row, or reports `EngineFailed`, halts the respawning.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Protocol

from worker.loop import WorkerSettings, run_worker
from worker.protocol import Cancel, EngineFailed, FromWorker, Ready, Shutdown, ToWorker
from worker.status_table import StatusTable

log = logging.getLogger(__name__)

BOOT_FAILURES_BEFORE_HALT = 2  # a worker that dies before it is ready this often in a row will not get better


class WorkerEvents(Protocol):
    def on_message(self, message: FromWorker) -> None: ...

    def on_worker_exit(self, exitcode: int | None, was_ready: bool, reason: str | None = None) -> None: ...


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "the worker process vanished"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        hint = " (likely out of memory: the kernel's OOM killer sends SIGKILL)" if -exitcode == signal.SIGKILL else ""
        return f"the worker process was killed by {name}{hint}"
    return f"the worker process exited with code {exitcode}"


class Supervisor:
    def __init__(self, settings: WorkerSettings, table: StatusTable, events: WorkerEvents) -> None:
        self._settings = settings
        self._table = table
        self._events = events
        self._context: SpawnContext = multiprocessing.get_context("spawn")
        self._send_lock = threading.Lock()
        self._inbox: Connection | None = None
        self._process: SpawnProcess | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._alive = False
        self.restarts = 0
        self.halted_reason: str | None = None
        self._kill_reason: str | None = None

    @staticmethod
    def context() -> SpawnContext:
        return multiprocessing.get_context("spawn")

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        # Tracked, not asked of the process: only the supervising thread may reap it (waitpid races otherwise).
        return self._alive

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def send(self, message: ToWorker) -> bool:
        """Hand a message to the worker; False if it is gone (its exit will be reported separately)."""
        if isinstance(message, Cancel):  # through shared memory: the engine thread sees it at its next step
            self._table.request_cancel(message.task_id)
            return True
        with self._send_lock:
            if self._inbox is None:
                return False
            try:
                self._inbox.send(message)
            except (OSError, ValueError):
                return False
            return True

    def kill_hung(self, reason: str) -> None:
        """The watchdog found the worker hung: kill it (it is started again) and report why it died."""
        process = self._process
        if process is None or not self._alive:
            return
        self._kill_reason = f"the worker hung ({reason}) and was killed"
        process.kill()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the worker finish encoding and exit; force it after `timeout` seconds."""
        with self._send_lock:
            self._stopping.set()
        self._table.request_stop()
        with self._send_lock:
            if self._inbox is not None:
                try:
                    self._inbox.send(Shutdown())
                except (OSError, ValueError):
                    pass
        # The supervising thread joins the worker; a second joiner here would race it for the exit status.
        if not self._thread.is_alive():
            return
        self._thread.join(timeout)
        process = self._process
        if self._thread.is_alive() and process is not None:
            log.warning("worker did not stop within %.0f s; terminating it", timeout)
            process.terminate()
            self._thread.join(5)
            if self._thread.is_alive():
                process.kill()
                self._thread.join(5)

    # -- the supervising thread --------------------------------------------------------------------------

    def _spawn(self) -> tuple[SpawnProcess, Connection]:
        inbox_reader, inbox_writer = self._context.Pipe(duplex=False)
        outbox_reader, outbox_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=run_worker,
            args=(self._settings, inbox_reader, outbox_writer, self._table),
            name="mflux-worker",
            daemon=True,
        )
        self._table.reset()
        self._table.request_stop(self._stopping.is_set())
        process.start()
        self._alive = True
        # The child holds its own copies; closing ours lets EOF reach each side when the other dies.
        inbox_reader.close()
        outbox_writer.close()
        with self._send_lock:
            self._inbox, self._process = inbox_writer, process
            if self._stopping.is_set():  # stop() ran while we were spawning: it could not tell this worker
                inbox_writer.send(Shutdown())
        log.info("worker process %d started", process.pid)
        return process, outbox_reader

    def _supervise(self) -> None:
        boot_failures = 0
        while not self._stopping.is_set():
            process, outbox = self._spawn()
            was_ready, load_error = self._relay(process, outbox)
            process.join()
            self._alive = False
            with self._send_lock:
                self._inbox.close()
                self._inbox = None
            outbox.close()
            self._table.reset()
            reason, self._kill_reason = self._kill_reason, None
            if not self._stopping.is_set() and load_error is None:
                log.error("%s", reason or describe_exit(process.exitcode))
            try:
                self._events.on_worker_exit(process.exitcode, was_ready, reason=reason)
            except Exception:
                log.exception("handling the worker's exit failed")
            if self._stopping.is_set():
                return
            if load_error is not None:
                self.halted_reason = load_error
                log.error("the engine cannot be loaded; not restarting the worker: %s", load_error)
                return
            boot_failures = 0 if was_ready else boot_failures + 1
            if boot_failures >= BOOT_FAILURES_BEFORE_HALT:
                self.halted_reason = (  # the cause belongs in /api/health, not only in the log
                    f"the worker died {boot_failures} times while loading the engine; "
                    f"last time {describe_exit(process.exitcode)}"
                )
                log.error("%s; not restarting it", self.halted_reason)
                return
            self.restarts += 1
            log.warning("restarting the worker process (restart %d)", self.restarts)

    def _relay(self, process: SpawnProcess, outbox: Connection) -> tuple[bool, str | None]:
        """Pass the worker's messages on until it exits; returns (it became ready, its load error)."""
        was_ready, load_error = False, None
        while True:
            ready = wait([outbox, process.sentinel])
            # Exited: whatever it sent before dying is still in the pipe; read that first.
            if outbox not in ready and not outbox.poll():
                return was_ready, load_error
            try:
                message = outbox.recv()
            except (EOFError, OSError):
                return was_ready, load_error
            if isinstance(message, Ready):
                was_ready = True
            elif isinstance(message, EngineFailed):
                load_error = message.message
            try:
                self._events.on_message(message)
            except Exception:  # one bad message must not kill supervision
                log.exception("handling %s from the worker failed", type(message).__name__)
