"""The worker process: load the engine once, then render whatever the server submits, one task at a time.

Encoding and writing an image runs on a side thread, so the engine starts the next task the moment the
pixels of the previous one exist.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from PIL import Image

from taskqueue.images import write_atomically
from worker.encoding import encode_image
from worker.engines.base import (
    Engine,
    EngineConfig,
    EngineLoadError,
    PreviewSource,
    TaskCancelled,
    load_engine,
)
from worker.protocol import (
    Cancelled,
    Failed,
    Finished,
    FromWorker,
    LoadFailed,
    Log,
    Ready,
    Rendered,
    Shutdown,
    Started,
    Submit,
)
from worker.status_table import StatusTable

PREVIEW_SIZE = 256  # longest side of a preview, in pixels
PREVIEW_INTERVAL = 0.5  # seconds between previews at most


@dataclass(frozen=True)
class WorkerSettings:
    engine: EngineConfig
    preview_path: str | None  # None: previews are off
    log_level: int = logging.INFO


class _Outbox:
    """The pipe to the server, shared by the main thread and the encoder thread."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: FromWorker) -> None:
        with self._lock:
            self._connection.send(message)


class _PipeLogHandler(logging.Handler):
    def __init__(self, outbox: _Outbox) -> None:
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._outbox.send(Log(record.levelno, record.getMessage(), getattr(record, "task_id", None)))
        except (OSError, ValueError):
            pass  # the server is gone; nobody is listening


def _die_with_parent() -> None:
    """On Linux, have the kernel kill us if the server dies (even by SIGKILL): no orphan holds the GPU."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the server already died before we got here
            os._exit(1)


def run_worker(settings: WorkerSettings, inbox: Connection, outbox_connection: Connection, table: StatusTable) -> None:
    """Entry point of the worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server; it shuts us down in order
    _die_with_parent()
    outbox = _Outbox(outbox_connection)
    logging.basicConfig(level=settings.log_level, handlers=[_PipeLogHandler(outbox)], force=True)
    table.set_worker_pid(os.getpid())

    began = time.monotonic()
    try:
        engine = load_engine(settings.engine)
    except EngineLoadError as error:
        outbox.send(LoadFailed(str(error)))
        return
    except Exception as error:  # a broken install must reach the user as a message, not a dead process
        outbox.send(LoadFailed(f"Loading the {settings.engine.engine} engine failed: {type(error).__name__}: {error}"))
        return
    outbox.send(Ready(engine.info, time.monotonic() - began))

    encoder = _Encoder(engine, outbox)
    previews = _PreviewWriter(Path(settings.preview_path), table) if settings.preview_path else None
    try:
        while True:
            message = inbox.recv()
            if isinstance(message, Shutdown):
                break
            _run_task(engine, message, table, outbox, encoder, previews)
    except EOFError:
        pass  # the server went away without saying goodbye
    finally:
        encoder.close()


def _run_task(
    engine: Engine,
    task: Submit,
    table: StatusTable,
    outbox: _Outbox,
    encoder: _Encoder,
    previews: _PreviewWriter | None,
) -> None:
    table.begin(task.task_id, task.params.steps)
    started_at = time.time()
    outbox.send(Started(task.task_id, started_at))
    progress = _TaskProgress(task.task_id, table, previews)
    try:
        image = engine.generate(task.params, progress)
    except TaskCancelled:
        outbox.send(Cancelled(task.task_id, time.time()))
        return
    except Exception as error:
        logging.getLogger(__name__).exception("generation failed", extra={"task_id": task.task_id})
        outbox.send(Failed(task.task_id, time.time(), "generation", f"{type(error).__name__}: {error}"))
        return
    finally:
        table.idle()
    rendered_at = time.time()
    outbox.send(Rendered(task.task_id, rendered_at, rendered_at - started_at, progress.step_seconds()))
    encoder.submit(task, image)


class _TaskProgress:
    """The engine's view of its task: report steps, learn about cancellation."""

    def __init__(self, task_id: str, table: StatusTable, previews: _PreviewWriter | None) -> None:
        self._task_id = task_id
        self._table = table
        self._previews = previews
        self._loop_began: float | None = None
        self._last_step_at = 0.0
        self._steps_seen = 0

    def loop_started(self, steps: int) -> None:
        self._loop_began = time.monotonic()
        self._table.loop_started(steps)

    def step_done(self, step: int, preview: PreviewSource | None = None) -> None:
        self._last_step_at = time.monotonic()
        self._steps_seen += 1
        self._table.step_done(step)
        if preview is not None and self._previews is not None:
            self._previews.maybe_write(preview)

    @property
    def cancelled(self) -> bool:
        return self._table.cancel_requested(self._task_id)

    def step_seconds(self) -> float | None:
        """The mean time of one denoising step (previews included), or None if the engine reported no steps."""
        if self._loop_began is None or self._steps_seen == 0:
            return None
        return (self._last_step_at - self._loop_began) / self._steps_seen


class _PreviewWriter:
    """Writes the running task's preview as a small JPEG, at most every PREVIEW_INTERVAL seconds."""

    def __init__(self, path: Path, table: StatusTable) -> None:
        self._path = path
        self._table = table
        self._last = 0.0

    def maybe_write(self, preview: PreviewSource) -> None:
        now = time.monotonic()
        if now - self._last < PREVIEW_INTERVAL:
            return
        self._last = now
        try:
            image = preview()
            image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
            buffer = _jpeg(image)
            write_atomically(self._path, buffer)
            self._table.preview_written()
        except Exception:  # a preview is a nicety; it must never cost the image
            logging.getLogger(__name__).warning("preview failed", exc_info=True)


def _jpeg(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


class _Encoder:
    """Encodes and stores finished images on a side thread, in order."""

    def __init__(self, engine: Engine, outbox: _Outbox) -> None:
        self._engine = engine
        self._outbox = outbox
        self._jobs: queue.SimpleQueue[tuple[Submit, Image.Image] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="encoder", daemon=True)
        self._thread.start()

    def submit(self, task: Submit, image: Image.Image) -> None:
        self._jobs.put((task, image))

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            task, image = job
            began = time.monotonic()
            try:
                fault_point = getattr(self._engine, "fault_point", None)
                if fault_point is not None:
                    fault_point(task.params, "encoding")
                data = encode_image(image, task.output, self._engine.image_metadata(task.params))
            except Exception as error:
                logging.getLogger(__name__).exception("encoding failed", extra={"task_id": task.task_id})
                self._outbox.send(Failed(task.task_id, time.time(), "encoding", f"{type(error).__name__}: {error}"))
                continue
            try:
                write_atomically(Path(task.image_path), data)
            except OSError as error:  # disk full, data directory gone or read-only: fail this task, keep serving
                message = f"could not store the image: {error}"
                logging.getLogger(__name__).error("%s", message, extra={"task_id": task.task_id})
                self._outbox.send(Failed(task.task_id, time.time(), "encoding", message))
                continue
            self._outbox.send(Finished(task.task_id, time.time(), len(data), time.monotonic() - began))
