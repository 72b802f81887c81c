"""Slow and stuck clients starve no one: clients that trickle their headers or body (slowloris), go quiet
half-way through a body, or never read their response, while normal clients keep getting fast answers.

Raw sockets play the bad clients. The proof is measured: the bad clients are shown to be active (still
trickling, still connected) over the whole time the normal requests are timed, and there are more of them
than the server has threads (16) and than waitress's default connection limit (100)."""

from __future__ import annotations

import base64
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests

from harness.server_process import wait_for

MAX_LATENCY = 2.0  # seconds; a normal request here takes a few milliseconds
STUCK = 18  # clients that never read: more than the server has threads (16)
IMAGE = {"width": 2048, "height": 2048, "steps": 1, "format": "PNG"}  # a 2.4 MB image, 3.3 MB as base64


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


@contextmanager
def connections(url: str, count: int, first_bytes: bytes, receive_buffer: int | None = None) -> Iterator[list]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if receive_buffer:  # before connecting, so the TCP window stays small and the server's sends stall
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.connect(address(url))
            sock.sendall(first_bytes)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


class Trickler(threading.Thread):
    """Sends one more byte of `pattern` on every socket, round after round, never finishing the request."""

    def __init__(self, sockets: list[socket.socket], pattern: bytes, pause: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.sockets, self.pattern, self.pause = sockets, pattern, pause
        self.rounds = 0
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.pause):  # pacing, not synchronisation: a slowloris sends slowly
            byte = self.pattern[self.rounds % len(self.pattern) : self.rounds % len(self.pattern) + 1]
            for sock in self.sockets:
                try:
                    sock.send(byte)
                except OSError:
                    self.failures += 1
            self.rounds += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def answer_started(sock: socket.socket) -> bool:
    """True once the server has begun sending its response (the client has bytes waiting to be read)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return False


def still_open(sock: socket.socket) -> bool:
    """True while the server keeps the connection: nothing to read yet, and no end of stream."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def timed_normal_requests(server, rounds: int, until: Callable[[], bool] = lambda: True) -> list[float]:
    """Status polls, health checks, submissions and image fetches, each on a new connection, timed: at least
    `rounds` rounds, and more until `until()` holds."""
    latencies = []

    def timed(method: str, path: str, **kwargs) -> requests.Response:
        began = time.monotonic()
        response = requests.request(method, server.url + path, timeout=10, headers={"Connection": "close"}, **kwargs)
        latencies.append(time.monotonic() - began)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
        return response

    index = 0
    while index < rounds or not until():
        index += 1
        timed("GET", "/api/health")
        body = {"prompt": f"normal client {index}", "width": 256, "height": 256, "steps": 2}
        task_id = timed("POST", "/api/generate", json=body).json()["task_id"]
        timed("GET", "/api/status", params={"task_id": task_id})
        timed("GET", "/api/tasks", params={"limit": 5})
    server.wait_status(task_id, "done")
    timed("GET", "/api/image", params={"task_id": task_id})
    return latencies


def assert_fast(latencies: list[float]) -> None:
    assert max(latencies) < MAX_LATENCY, f"slowest normal request took {max(latencies):.2f} s"
    assert statistics.median(latencies) < 0.25, f"median normal request took {statistics.median(latencies):.2f} s"


def test_slowloris_headers_and_half_sent_bodies_do_not_block_other_clients(server_factory):
    server = server_factory()
    host = address(server.url)[0].encode()
    headers = b"GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\n"
    body = b"POST /api/generate HTTP/1.1\r\nHost: " + host + b"\r\nContent-Type: application/json\r\n"
    body += b'Content-Length: 100000\r\n\r\n{"prompt": "'
    with (
        connections(server.url, 150, headers) as header_tricklers,
        connections(server.url, 50, body) as body_tricklers,
        connections(server.url, 30, body) as gone_quiet,  # half a body, then silence
    ):
        tricklers = [Trickler(header_tricklers, b"X-Slow: 1\r\n"), Trickler(body_tricklers, b"a")]
        for trickler in tricklers:
            trickler.start()
        try:
            before = [t.rounds for t in tricklers]
            # Timed for as long as it takes every slow client to send ten more bytes, at least.
            latencies = timed_normal_requests(
                server, rounds=10, until=lambda: all(t.rounds - b >= 10 for t, b in zip(tricklers, before, strict=True))
            )
            rounds_during = [t.rounds - b for t, b in zip(tricklers, before, strict=True)]
        finally:
            for trickler in tricklers:
                trickler.stop()
        # The slow clients were sending all along, and the server still holds every one of their connections.
        assert min(rounds_during) >= 10, rounds_during
        assert [t.failures for t in tricklers] == [0, 0]
        everyone = header_tricklers + body_tricklers + gone_quiet
        assert sum(map(still_open, everyone)) == len(everyone) == 230
    assert_fast(latencies)
    assert server.get("/api/health").status_code == 200


def test_clients_that_never_read_their_image_do_not_block_others(server_factory):
    server = server_factory()
    task_id = server.generate("a big picture", **IMAGE)
    server.wait_status(task_id, "done")
    expected = server.get("/api/image", params={"task_id": task_id, "delete": "false"}).content
    host = address(server.url)[0].encode()
    request = f"GET /api/image?task_id={task_id}&delete=false&base64=true HTTP/1.1\r\nHost: ".encode() + host
    request += b"\r\n\r\n"
    # Three requests each, pipelined: the responses outgrow what the kernel buffers (4 MB at most on Linux),
    # and waitress has the next request in hand while the previous answer waits to be read.
    with connections(server.url, STUCK, request * 3, receive_buffer=4096) as stuck:
        # Each first response is on its way before the clock starts: had a thread to wait for the client to
        # read before it could answer the second request, it would now be stuck there, and others with it.
        wait_for(lambda: all(map(answer_started, stuck)), 30, what="every stuck client to be answered")
        began = time.monotonic()
        latencies = timed_normal_requests(server, rounds=10)
        fetched = requests.get(server.url + "/api/image", params={"task_id": task_id, "delete": "false"}, timeout=10)
        fetch_seconds = time.monotonic() - began
        assert fetched.content == expected
        assert sum(map(still_open, stuck)) == STUCK  # the server is still waiting for them to read
        # One of them finally reads: it gets the whole image, intact.
        reader = stuck[0]
        reader.settimeout(10)
        received = b""
        while b"\r\n\r\n" not in received:
            received += reader.recv(65536)
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
        while len(rest) < length:
            rest += reader.recv(65536)
        assert base64.b64decode(rest[:length]) == expected
    assert_fast(latencies)
    assert fetch_seconds < 30


def test_oversized_bodies_are_refused_before_they_are_read(server_factory):
    server = server_factory()
    # Above the app's limit (256 kB where no image is taken) but within waitress's: the app answers, in JSON.
    big = server.post("/api/load", data=b'{"model": "' + b"a" * 300_000 + b'"}')
    assert big.status_code == 413
    assert big.json()["code"] == 413
    # Far above: waitress refuses on the Content-Length alone, without waiting for the body.
    with connections(server.url, 1, b"") as (sock,):
        # (four times the largest body with images: core/rules.py Limits.max_body_bytes, api/serving.py)
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(100).startswith(b"HTTP/1.1 413")
