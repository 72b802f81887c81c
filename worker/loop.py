"""The worker process: start the engine, then load variants and render whatever the server submits, one task at a
time. Encoding runs on a side thread (encoder.py); which variants are loaded is models.py's business."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from core.engines import EngineConfig
from core.tasks import GenerationParams
from worker.encoder import Encoder
from worker.engines.base import Engine, EngineLoadError, PreviewSource, TaskCancelled, load_engine
from worker.models import LoadedModels
from worker.outbox import Outbox, OutboxLogHandler
from worker.previews import PreviewWriter
from worker.protocol import Cancelled, EngineFailed, Failed, Preload, Ready, Rendered, Shutdown, Started, Submit
from worker.status_table import StatusTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    engine: EngineConfig
    preview_path: str | None  # None: previews are off
    log_level: int = logging.INFO  # the root logger's, which libraries' loggers follow
    log_levels: tuple[tuple[str, int], ...] = ()  # named loggers' own levels, as the server's set-up gave them


def run_worker(settings: WorkerSettings, inbox: Connection, outbox_connection: Connection, table: StatusTable) -> None:
    """Entry point of the worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server; it shuts us down in order
    _die_with_parent()
    outbox = Outbox(outbox_connection)
    logging.basicConfig(level=settings.log_level, handlers=[OutboxLogHandler(outbox)], force=True)
    for name, level in settings.log_levels:
        logging.getLogger(name).setLevel(level)
    table.set_worker_pid(os.getpid())
    engine = _start_engine(settings, outbox)
    if engine is None:
        return
    models = LoadedModels(engine, settings.engine.max_loaded_models, outbox)
    encoder = Encoder(outbox)
    previews = PreviewWriter(Path(settings.preview_path), table) if settings.preview_path else None
    try:
        while not isinstance(message := inbox.recv(), Shutdown):
            match message:
                case Preload():
                    models.get(message.variant)
                case Submit():
                    _run_task(models, message, table, outbox, encoder, previews)
    except EOFError:
        pass  # the server went away without saying goodbye
    finally:
        encoder.close()


def _start_engine(settings: WorkerSettings, outbox: Outbox) -> Engine | None:
    try:
        engine = load_engine(settings.engine)
    except EngineLoadError as error:
        outbox.send(EngineFailed(str(error)))
        return None
    except Exception as error:  # a broken install must reach the user as a message, not a dead process
        outbox.send(
            EngineFailed(f"Starting the {settings.engine.engine} engine failed: {type(error).__name__}: {error}")
        )
        return None
    outbox.send(Ready(engine.name))
    return engine


def _run_task(
    models: LoadedModels,
    task: Submit,
    table: StatusTable,
    outbox: Outbox,
    encoder: Encoder,
    previews: PreviewWriter | None,
) -> None:
    model = models.get(task.variant)
    if model is None:
        return  # LoadFailed says why; the scheduler fails the tasks that need this variant
    first = models.first_image(task.variant)
    table.begin(task.task_id, task.params.steps_run)
    started_at = time.time()
    outbox.send(Started(task.task_id, started_at))
    try:
        made = model.generate(
            _with_input_paths(task.params, task.inputs_dir), TaskProgress(task.task_id, table, previews)
        )
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
    outbox.send(_rendered(task, started_at, rendered_at, live, made.prompt_cached, first))
    encoder.submit(task, made.image, model)


def _rendered(task: Submit, started_at: float, rendered_at: float, live, cached: bool | None, first: bool) -> Rendered:
    """The Rendered message, with the phases the status table timed."""
    loop_began = live.loop_started_at if live is not None else None
    last_step = live.last_step_at if live is not None else None
    return Rendered(
        task.task_id,
        rendered_at,
        rendered_at - started_at,
        step_seconds=live.step_seconds if live is not None else None,
        before_loop_seconds=loop_began - started_at if loop_began else None,
        loop_seconds=last_step - loop_began if loop_began and last_step else None,
        after_loop_seconds=rendered_at - last_step if last_step else None,
        steps_run=live.steps_done if live is not None else 0,
        prompt_cached=cached,
        first_after_load=first,
    )


def _with_input_paths(params: GenerationParams, inputs_dir: str) -> GenerationParams:
    """The task's input images as paths the engine can open."""
    if params.init_image is None and not params.references and params.mask is None:
        return params
    folder = Path(inputs_dir)
    return dataclasses.replace(
        params,
        init_image=str(folder / params.init_image) if params.init_image else None,
        references=tuple(str(folder / name) for name in params.references),
        mask=str(folder / params.mask) if params.mask else None,
    )


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
