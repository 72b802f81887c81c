"""Following a task until it ends or the caller's patience runs out, telling the MCP client how it goes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from mflux_client import TaskStatus, next_poll_delay
from mflux_mcp.backend import Backend
from mflux_mcp.results import describe_status

OnStatus = Callable[[TaskStatus], Awaitable[None]]


async def follow(backend: Backend, task_id: str, wait_seconds: float, on_status: OnStatus | None = None) -> TaskStatus:
    """Poll the task's status until it is final or `wait_seconds` have passed; return the last status read.

    The status is read once more at the deadline, so a task that finished during the last sleep is seen as
    done. Polls follow the server's forecast (`next_poll_delay`), as `MfluxClient.wait` does, but sleep on the
    event loop, so the MCP client's cancellation interrupts the wait at once.
    """
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        status = await backend.status(task_id)
        if on_status is not None:
            await on_status(status)
        left = deadline - time.monotonic()
        if status.is_final or left <= 0:
            return status
        await anyio.sleep(min(next_poll_delay(status), left))


class ProgressReporter:
    """Sends MCP progress notifications for a wait (a no-op unless the client asked for progress).

    The spec wants `progress` to increase with every notification, and queue positions and denoising steps
    do not (a task waits at step 0 for a while), so progress is the seconds spent so far and `total` that plus
    the server's forecast of the seconds left; the message says what the task is doing.
    """

    def __init__(self, report: Callable[[float, float | None, str | None], Awaitable[None]]) -> None:
        self._report = report
        self._started = time.monotonic()
        self._last = -1.0

    async def __call__(self, status: TaskStatus) -> None:
        if status.is_final:
            return  # the result itself says how it ended
        elapsed = round(time.monotonic() - self._started, 3)
        if elapsed <= self._last:
            return
        self._last = elapsed
        await self._report(elapsed, round(elapsed + status.wait_remaining, 3), f"task {describe_status(status)}")
