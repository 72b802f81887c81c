"""Starting the real server for a benchmark, and the benchmark driver's own HTTP client.

Servers are started with `harness.server_process.RunningServer`, the same class the end-to-end tests
use: `python server.py` as a subprocess (waitress + its worker process) on a free loopback port.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

from harness.server_process import RunningServer, wait_for

__all__ = ["Api", "RunningServer", "running_server", "wait_for"]


@contextmanager
def running_server(
    data_dir: Path | None = None,
    *,
    engine: str = "demo",
    demo_speed: float = 50.0,
    args: Sequence[str] = (),
    start_timeout: float = 60.0,
) -> Iterator[RunningServer]:
    """A started server (engine loaded), stopped afterwards; in a temporary data directory unless given one."""
    with tempfile.TemporaryDirectory(prefix="mflux-bench-") as temporary:
        server = RunningServer(data_dir or Path(temporary) / "data", args, engine=engine, demo_speed=demo_speed)
        server.start(timeout=start_timeout)
        try:
            yield server
        finally:
            try:
                server.stop(timeout=30)
            except Exception:
                server.kill()


class Api:
    """The benchmark driver's client: one keep-alive connection, JSON in and out, errors raised."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self.session = requests.Session()

    def generate(self, body: dict) -> dict:
        response = self.session.post(self.url + "/api/generate", json=body, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def status(self, task_id: str) -> dict:
        response = self.session.get(self.url + "/api/status", params={"task_id": task_id}, timeout=self.timeout)
        if response.status_code != 410:  # 410: failed or cancelled, with the task's status in the body
            response.raise_for_status()
        return response.json()

    def tasks(self, statuses: Sequence[str] = (), limit: int = 1000, offset: int = 0) -> tuple[list[dict], int]:
        params: dict = {"limit": limit, "offset": offset}
        if statuses:
            params["status"] = list(statuses)
        response = self.session.get(self.url + "/api/tasks", params=params, timeout=self.timeout)
        response.raise_for_status()
        return response.json(), int(response.headers["X-Total-Count"])

    def all_tasks(self, statuses: Sequence[str] = (), page: int = 1000) -> list[dict]:
        found: list[dict] = []
        while True:
            tasks, total = self.tasks(statuses, page, len(found))
            found += tasks
            if not tasks or len(found) >= total:
                return found

    def image(self, task_id: str, delete: bool = True) -> bytes:
        response = self.session.get(
            self.url + "/api/image", params={"task_id": task_id, "delete": str(delete).lower()}, timeout=self.timeout
        )
        response.raise_for_status()
        return response.content

    def cancel(self, task_id: str) -> dict:
        response = self.session.get(self.url + "/api/cancel", params={"task_id": task_id}, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def health(self) -> dict:
        return self.session.get(self.url + "/api/health", timeout=self.timeout).json()

    def wait_until(self, task_ids: Sequence[str], statuses: Sequence[str], timeout: float, interval: float) -> None:
        """Poll until every task is in one of `statuses`; the last one polled first (it usually ends last)."""
        pending = list(task_ids)
        deadline = time.monotonic() + timeout
        while pending:
            if self.status(pending[-1])["status"] in statuses:
                pending.pop()
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} task(s) not {'/'.join(statuses)} after {timeout:.0f} s")
            time.sleep(interval)
