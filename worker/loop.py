"""The worker process: load the engine once, then render whatever the server submits, one task at a time."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from core.engines import EngineConfig
from worker.encoder import Encoder
from worker.engines.base import Engine, EngineLoadError, PreviewSource, TaskCancelled, load_engine
from worker.outbox import Outbox, OutboxLogHandler
from worker.previews import PreviewWriter
from worker.protocol import Cancelled, Failed, LoadFailed, Ready, Rendered, Shutdown, Started, Submit
from worker.status_table import StatusTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    engine: EngineConfig
    preview_path: str | None  # None: previews are off
    log_level: int = logging.INFO


def run_worker(settings: WorkerSettings, inbox: Connection, outbox_connection: Connection, table: StatusTable) -> None:
    """Entry point of the worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server; it shuts us down in order
    _die_with_parent()
    outbox = Outbox(outbox_connection)
    logging.basicConfig(level=settings.log_level, handlers=[OutboxLogHandler(outbox)], force=True)
    table.set_worker_pid(os.getpid())
    engine = _load(settings, outbox)
    if engine is None:
        return
    encoder = Encoder(engine, outbox)
    previews = PreviewWriter(Path(settings.preview_path), table) if settings.preview_path else None
    try:
        while not isinstance(message := inbox.recv(), Shutdown):
            _run_task(engine, message, table, outbox, encoder, previews)
    except EOFError:
        pass  # the server went away without saying goodbye
    finally:
        encoder.close()


def _load(settings: WorkerSettings, outbox: Outbox) -> Engine | None:
    began = time.monotonic()
    try:
        engine = load_engine(settings.engine)
    except EngineLoadError as error:
        outbox.send(LoadFailed(str(error)))
        return None
    except Exception as error:  # a broken install must reach the user as a message, not a dead process
        outbox.send(LoadFailed(f"Loading the {settings.engine.engine} engine failed: {type(error).__name__}: {error}"))
        return None
    outbox.send(Ready(engine.info, time.monotonic() - began))
    return engine


def _run_task(
    engine: Engine,
    task: Submit,
    table: StatusTable,
    outbox: Outbox,
    encoder: Encoder,
    previews: PreviewWriter | None,
) -> None:
    table.begin(task.task_id, task.params.steps)
    started_at = time.time()
    outbox.send(Started(task.task_id, started_at))
    try:
        image = engine.generate(task.params, TaskProgress(task.task_id, table, previews))
    except TaskCancelled:
        outbox.send(Cancelled(task.task_id, time.time()))
        return
    except Exception as error:
        log.exception("generation failed", extra={"task_id": task.task_id})
        outbox.send(Failed(task.task_id, time.time(), "generation", f"{type(error).__name__}: {error}"))
        return
    live = table.snapshot()  # before `rendered`, which counts the last step as done whatever the engine said
    table.rendered()
    rendered_at = time.time()
    step_seconds = live.step_seconds if live is not None else None
    outbox.send(Rendered(task.task_id, rendered_at, rendered_at - started_at, step_seconds))
    encoder.submit(task, image)


class TaskProgress:
    """The engine's view of its task: report steps, learn about cancellation."""

    def __init__(self, task_id: str, table: StatusTable, previews: PreviewWriter | None) -> None:
        self._task_id = task_id
        self._table = table
        self._previews = previews

    def loop_started(self, steps: int) -> None:
        self._table.loop_started(steps)

    def step_done(self, step: int, preview: PreviewSource | None = None) -> None:
        self._table.step_done(step)
        if preview is not None and self._previews is not None:
            self._previews.maybe_write(preview)

    @property
    def cancelled(self) -> bool:
        return self._table.cancel_requested(self._task_id)


def _die_with_parent() -> None:
    """On Linux, have the kernel kill us if the server dies (even by SIGKILL): no orphan holds the GPU."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the server already died before we got here
            os._exit(1)
