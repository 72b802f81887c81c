"""The live state of the worker, in shared memory: written by the worker, read by the API without asking it.

One fixed-size ctypes structure in a `RawValue` (no lock that a killed worker could leave held). Consistency
comes from a sequence counter (a seqlock): the writer makes it odd while it writes and even when done; a reader
copies the structure and retries if the counter was odd or moved. The API writes only the cancellation fields,
the worker only the rest, so each field has a single writer.

The worker keeps a task's entry until it begins the next one: once rendered, the entry still says "all steps
done" (and when), so a reader between the render and the scheduler's bookkeeping never sees progress go back.
"""

from __future__ import annotations

import ctypes
import time
from multiprocessing.context import BaseContext

from core.progress import LiveProgress

_ID_SIZE = 16


class _Table(ctypes.Structure):
    _fields_ = [
        ("sequence", ctypes.c_uint64),
        ("task_id", ctypes.c_char * _ID_SIZE),
        ("started_at", ctypes.c_double),
        ("loop_started_at", ctypes.c_double),
        ("last_step_at", ctypes.c_double),
        ("rendered_at", ctypes.c_double),
        ("steps", ctypes.c_int32),
        ("steps_done", ctypes.c_int32),
        ("preview_count", ctypes.c_uint32),
        ("worker_pid", ctypes.c_int32),
        # Written by the API process:
        ("cancel_task_id", ctypes.c_char * _ID_SIZE),
        ("stop_requested", ctypes.c_bool),
    ]


class StatusTable:
    READ_ATTEMPTS = 1000

    def __init__(self, context: BaseContext) -> None:
        self._shared = context.RawValue(_Table)
        self._last: LiveProgress | None = None  # the reader's last consistent snapshot

    # -- worker side -------------------------------------------------------------------------------------

    def _write(self, **fields: object) -> None:
        table = self._shared
        table.sequence += 1
        for name, value in fields.items():
            setattr(table, name, value)
        table.sequence += 1

    def set_worker_pid(self, pid: int) -> None:
        self._write(worker_pid=pid)

    def begin(self, task_id: str, steps: int) -> None:
        self._write(
            task_id=task_id.encode(),
            started_at=time.time(),
            loop_started_at=0.0,
            last_step_at=0.0,
            rendered_at=0.0,
            steps=steps,
            steps_done=0,
            preview_count=0,
        )

    def loop_started(self, steps: int) -> None:
        self._write(loop_started_at=time.time(), steps=steps)

    def step_done(self, step: int) -> None:
        self._write(steps_done=step, last_step_at=time.time())

    def preview_written(self) -> None:
        self._write(preview_count=self._shared.preview_count + 1)

    def rendered(self) -> None:
        self._write(rendered_at=time.time(), steps_done=self._shared.steps)

    def cancel_requested(self, task_id: str) -> bool:
        table = self._shared
        return table.stop_requested or table.cancel_task_id == task_id.encode()

    # -- API side ----------------------------------------------------------------------------------------

    def request_cancel(self, task_id: str) -> None:
        self._shared.cancel_task_id = task_id.encode()

    def request_stop(self, stop: bool = True) -> None:
        """Ask the worker to abandon its task at the next step (graceful shutdown); it is re-run later."""
        self._shared.stop_requested = stop

    def reset(self) -> None:
        """After a worker died: whatever it was doing is over (and it may have died mid-write)."""
        ctypes.memset(ctypes.addressof(self._shared), 0, ctypes.sizeof(_Table))
        self._last = None

    def snapshot(self) -> LiveProgress | None:
        """The task the engine has or last had, or None when it has had none since it started."""
        table = self._shared
        copy = _Table()
        for _ in range(self.READ_ATTEMPTS):
            before = table.sequence
            if before % 2 == 0:
                ctypes.memmove(ctypes.addressof(copy), ctypes.addressof(table), ctypes.sizeof(_Table))
                if table.sequence == before:
                    break
        else:
            # The worker is in the middle of a write (preempted there, or it died and the supervisor will reset
            # the table): the last consistent read is one write old, which beats "no progress at all".
            return self._last
        if not copy.task_id:
            return None
        self._last = LiveProgress(
            task_id=copy.task_id.decode(),
            started_at=copy.started_at,
            steps=copy.steps,
            steps_done=copy.steps_done,
            loop_started_at=copy.loop_started_at or None,
            last_step_at=copy.last_step_at or None,
            rendered_at=copy.rendered_at or None,
            preview_count=copy.preview_count,
        )
        return self._last

    @property
    def worker_pid(self) -> int:
        return self._shared.worker_pid
