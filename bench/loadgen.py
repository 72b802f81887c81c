"""A closed-loop HTTP/1.1 load generator, in its own process, cheap enough not to be the bottleneck.

Like wrk: N keep-alive connections, each sends its next request the moment the previous answer is complete.
It is one `selectors` loop over non-blocking sockets with requests pre-encoded to bytes, so a request costs
the generator a few tens of microseconds of CPU; it runs in a child interpreter so it shares the machine's
cores with the server, not the GIL of the benchmark driver. It speaks just enough HTTP for this server:
Content-Length bodies, keep-alive, and a reconnect when the server closes.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RequestKind:
    """One kind of request in the mix: `path` may hold `{task}`, filled per connection from `task_ids`."""

    name: str
    weight: float
    method: str = "GET"
    path: str = "/api/status?task_id={task}"
    body: bytes = b""


@dataclass
class LoadResult:
    seconds: float
    connections: int
    latencies: dict[str, list[float]]  # per kind, seconds, completed requests only
    statuses: dict[str, dict[int, int]]  # per kind: HTTP status -> count
    errors: list[str] = field(default_factory=list)  # connection-level failures
    generator_cpu_seconds: float = 0.0

    @property
    def completed(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def failed(self) -> int:
        bad = sum(n for codes in self.statuses.values() for code, n in codes.items() if code >= 400)
        return bad + len(self.errors)

    @property
    def all_latencies(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]


def run_load(
    url: str,
    kinds: Sequence[RequestKind],
    task_ids: Sequence[str] = ("",),
    connections: int = 16,
    duration: float = 10.0,
    seed: int = 0,
) -> LoadResult:
    """Run the load from a child process for `duration` seconds and return what it measured."""
    config = {
        "url": url,
        "kinds": [asdict(k) | {"body": k.body.decode()} for k in kinds],
        "task_ids": list(task_ids),
        "connections": connections,
        "duration": duration,
        "seed": seed,
    }
    # A plain child interpreter (not multiprocessing): it works from any __main__, pytest's included.
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"], input=json.dumps(config), capture_output=True, text=True,
        cwd=ROOT, timeout=duration + 60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    answer = json.loads(done.stdout)
    answer["statuses"] = {kind: {int(c): n for c, n in codes.items()} for kind, codes in answer["statuses"].items()}
    return LoadResult(**answer)


def main() -> None:
    config = json.load(sys.stdin)
    kinds = [RequestKind(**(k | {"body": k["body"].encode()})) for k in config.pop("kinds")]
    duration = config.pop("duration")
    url = config.pop("url")
    result = _Generator(url, kinds, **config).run(duration)
    json.dump(asdict(result), sys.stdout)


class _Connection:
    __slots__ = ("buffer", "index", "kind", "random", "sent_at", "sock", "task_id")

    def __init__(self, index: int, task_id: str, seed: int) -> None:
        self.index = index
        self.task_id = task_id
        self.random = random.Random(seed * 1000 + index)
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.kind: str = ""
        self.sent_at = 0.0


class _Generator:
    def __init__(self, url: str, kinds: list[RequestKind], task_ids: list[str], connections: int, seed: int) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port or 80)
        host = f"{parts.hostname}:{parts.port}".encode()
        self.kinds = kinds
        self.weights = [k.weight for k in kinds]
        # Pre-encoded requests, one set per task id, so the loop only picks and sends bytes.
        self.encoded = {
            task_id: {k.name: _encode(k, host, task_id) for k in kinds} for task_id in dict.fromkeys(task_ids)
        }
        self.connections = [_Connection(i, task_ids[i % len(task_ids)], seed) for i in range(connections)]
        self.selector = selectors.DefaultSelector()
        self.latencies: dict[str, list[float]] = {k.name: [] for k in kinds}
        self.statuses: dict[str, dict[int, int]] = {k.name: {} for k in kinds}
        self.errors: list[str] = []

    def run(self, duration: float) -> LoadResult:
        cpu_before = sum(os.times()[:2])
        for connection in self.connections:
            self._connect(connection)
        began = time.perf_counter()
        deadline = began + duration
        for connection in self.connections:
            self._send_next(connection)
        open_count = len(self.connections)
        drain_deadline = deadline + 10.0
        while open_count:
            now = time.perf_counter()
            if now > drain_deadline:
                self.errors.extend(f"{c.kind}: no answer within 10 s" for c in self.connections if c.kind)
                break
            for key, _ in self.selector.select(timeout=0.5):
                connection: _Connection = key.data
                if not self._receive(connection):
                    continue
                if time.perf_counter() < deadline:
                    self._send_next(connection)
                else:
                    open_count -= 1
                    connection.kind = ""
        elapsed = min(time.perf_counter(), deadline) - began
        for connection in self.connections:
            if connection.sock is not None:
                connection.sock.close()
        cpu = sum(os.times()[:2]) - cpu_before
        return LoadResult(elapsed, len(self.connections), self.latencies, self.statuses, self.errors, cpu)

    def _connect(self, connection: _Connection) -> None:
        sock = socket.create_connection(self.address, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        connection.sock = sock
        connection.buffer.clear()
        self.selector.register(sock, selectors.EVENT_READ, connection)

    def _reconnect(self, connection: _Connection) -> None:
        self.selector.unregister(connection.sock)
        connection.sock.close()
        self._connect(connection)

    def _send_next(self, connection: _Connection) -> None:
        kinds = self.kinds
        kind = kinds[0].name if len(kinds) == 1 else connection.random.choices(kinds, self.weights)[0].name
        connection.kind = kind
        connection.sent_at = time.perf_counter()
        try:
            connection.sock.sendall(self.encoded[connection.task_id][kind])
        except BlockingIOError:  # a full socket buffer: small requests never get here, but be correct
            connection.sock.setblocking(True)
            connection.sock.sendall(self.encoded[connection.task_id][kind])
            connection.sock.setblocking(False)
        except OSError as error:
            self._failed(connection, f"send: {error}")

    def _receive(self, connection: _Connection) -> bool:
        """Read what is there; True once a whole response has arrived (and was recorded)."""
        try:
            chunk = connection.sock.recv(262144)
        except BlockingIOError:
            return False
        except OSError as error:
            self._failed(connection, f"recv: {error}")
            return True
        if not chunk:
            self._failed(connection, "connection closed by the server")
            return True
        connection.buffer += chunk
        head_end = connection.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = bytes(connection.buffer[:head_end]).decode("latin-1").lower()
        length = _content_length(head)
        if len(connection.buffer) < head_end + 4 + length:
            return False
        elapsed = time.perf_counter() - connection.sent_at
        status = int(head[9:12])
        self.latencies[connection.kind].append(elapsed)
        codes = self.statuses[connection.kind]
        codes[status] = codes.get(status, 0) + 1
        del connection.buffer[: head_end + 4 + length]
        if "\r\nconnection: close" in head:
            self._reconnect(connection)
        return True

    def _failed(self, connection: _Connection, message: str) -> None:
        self.errors.append(f"{connection.kind}: {message}")
        self._reconnect(connection)


def _content_length(head: str) -> int:
    marker = "\r\ncontent-length:"
    at = head.find(marker)
    if at < 0:
        if "\r\ntransfer-encoding: chunked" in head:
            raise RuntimeError("chunked responses are not supported by this load generator")
        return 0
    end = head.find("\r\n", at + 2)
    return int(head[at + len(marker) : end if end >= 0 else None])


def _encode(kind: RequestKind, host: bytes, task_id: str) -> bytes:
    path = kind.path.format(task=task_id).encode()
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n" % (kind.method.encode(), path, host)
    if kind.body or kind.method in ("POST", "PUT"):
        head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(kind.body)
    return head + b"\r\n" + kind.body


if __name__ == "__main__":
    main()
