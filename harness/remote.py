"""A real `redis-server` and real `mflux-server-worker` processes, for the scale-out tests and benchmarks.

Redis is Debian's `redis-server` (scripts/test.sh installs it), started on a free loopback port in a directory of
its own; nothing is left behind. Workers run `python -m worker.remote` as a person would run the console script.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from harness.server_process import ROOT, wait_for

REDIS_MISSING = "redis-server is not installed: scripts/test.sh installs it (apt-get install redis-server)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    def __init__(self, directory: Path, persistent: bool = False) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(REDIS_MISSING)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        self.command = [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                        "--dir", str(directory), *persistence]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(self.command, cwd=self.directory, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
        wait_for(self._answers, 15, what="redis-server to answer")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RunningWorker:
    """`mflux-server-worker` on the demo engine, its output collected."""

    def __init__(self, broker: str, name: str, args: Sequence[str] = (), demo_speed: float = 20.0,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.name = name
        self.command = [sys.executable, "-u", "-m", "worker.remote", "--broker", broker, "--name", name,
                        "--engine", "demo", "--demo-speed", str(demo_speed), *args]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []

    def start(self) -> RunningWorker:
        self.lines = []
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.lines[-60:])

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # its worker process dies with it (PR_SET_PDEATHSIG)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a paused worker cannot stop
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def exited(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)
