"""Start the real server (waitress + worker process) as a subprocess on a free loopback port.

Used by the integration tests and the benchmarks alike. Every wait has a deadline; nothing sleeps blindly.
`ended_by` records who ended the process (a test's `stop` or `kill`), so that a fixture can tell a server that
died on its own, or could not stop, from one a test ended on purpose.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import requests

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "server.py"
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.02, what: str = "condition") -> T:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class RunningServer:
    def __init__(
        self,
        data_dir: Path,
        args: Sequence[str] = (),
        engine: str = "demo",
        demo_speed: float = 50.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.command = [sys.executable, "-u", str(SERVER), "--engine", engine, "--port", "0", "--host", "127.0.0.1"]
        self.command += ["--data-dir", str(data_dir), *args]
        if engine == "demo":
            self.command += ["--demo-speed", str(demo_speed)]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._log_closed = False
        self.ended_by: str | None = None  # "stop", "kill", or "exit" (it exited while starting, as a test expected)

    # -- life cycle --------------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, wait_ready: bool = True) -> RunningServer:
        self.lines = []
        self._log_closed = False
        self.ended_by = None
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
        )  # fmt: skip
        threading.Thread(target=self._read_log, args=(self.process,), daemon=True).start()
        match = self.wait_for_log(LISTENING, timeout)
        self.url = match.group(1)
        if wait_ready:
            wait_for(self.model_loaded, timeout, what="the engine to load")
        return self

    def _read_log(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        process.stdout.close()
        with self._changed:
            self._log_closed = True
            self._changed.notify_all()

    def wait_for_log(self, pattern: re.Pattern | str, timeout: float = 30.0, start: int = 0) -> re.Match:
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if match := pattern.search(line):
                        return match
                if self._log_closed:
                    code = self.process.wait(10)
                    self.ended_by = "exit"
                    raise RuntimeError(f"server exited ({code}) before logging {pattern.pattern!r}:\n{self.log_text()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no log line matching {pattern.pattern!r}:\n" + self.log_text())
                self._changed.wait(min(left, 0.5))

    def log_text(self) -> str:
        return "\n".join(self.lines[-80:])

    def model_loaded(self) -> bool:
        try:
            return requests.get(self.url + "/api/health", timeout=5).json().get("model_loaded", False)
        except requests.RequestException:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the server and wait for it to exit; returns its exit code (raises if it did not stop)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.ended_by = "stop"
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        if self.process is not None and self.process.poll() is None:
            self.ended_by = "kill"
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            pass

    # -- talking to it -----------------------------------------------------------------------------------

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def generate(self, prompt: str = "a test pattern", **params) -> str:
        body = {"prompt": prompt, "width": 256, "height": 256, "steps": 2, **params}
        response = self.post("/api/generate", json=body)
        response.raise_for_status()
        return response.json()["task_id"]

    def status(self, task_id: str) -> dict:
        return self.get("/api/status", params={"task_id": task_id}).json()

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 60.0) -> dict:
        wanted = statuses or ("done",)
        return wait_for(
            lambda: (s := self.status(task_id)) and s.get("status") in wanted and s,
            timeout,
            what=f"task {task_id} to be {'/'.join(wanted)}",
        )

    def worker_pid(self) -> int:
        return self.get("/api/health").json()["worker_pid"]
