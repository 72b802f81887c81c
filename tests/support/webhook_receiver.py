"""A webhook receiver on loopback for the tests: records every call, answers as told, can hold calls (slow)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness.server_process import wait_for


@dataclass
class Call:
    path: str
    headers: dict[str, str]  # as sent (a case-insensitive `get` would hide a wrong spelling)
    body: bytes
    at: float  # time.monotonic() when it arrived
    sni: str | None = None

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


@dataclass
class Receiver:
    url: str
    calls: list[Call] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # statuses for the next calls, in order; then `default`
    default: int = 200
    hold: threading.Event | None = None  # calls wait for it (at most `hold_seconds`) before they are answered
    hold_seconds: float = 60.0
    answered: list[int] = field(default_factory=list)  # the status each call got, in order of answering
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_calls(self, count: int, timeout: float = 30.0) -> list[Call]:
        wait_for(lambda: len(self.calls) >= count, timeout, what=f"{count} webhook call(s)")
        return list(self.calls)

    def wait_answered(self, status: int, timeout: float = 30.0) -> None:
        wait_for(lambda: status in self.answered, timeout, what=f"a webhook call answered {status}")

    def _next_status(self) -> int:
        with self.lock:
            return self.answers.pop(0) if self.answers else self.default


@contextmanager
def webhook_receiver(tls: ssl.SSLContext | None = None, host_name: str = "127.0.0.1") -> Iterator[Receiver]:
    """Serve on 127.0.0.1 (HTTPS with `tls`); yields the Receiver, whose URL names `host_name`."""
    sni_seen: dict[int, str | None] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            sni = sni_seen.get(id(self.connection))
            receiver.calls.append(Call(self.path, dict(self.headers.items()), body, time.monotonic(), sni))
            if receiver.hold is not None:
                receiver.hold.wait(receiver.hold_seconds)
            status = receiver._next_status()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", receiver.url + "/redirected")
            self.send_header("Content-Length", "0")
            self.end_headers()
            receiver.answered.append(status)

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:

        def remember_sni(sock: ssl.SSLSocket, name: str | None, context: ssl.SSLContext) -> None:
            sni_seen[id(sock)] = name

        tls.sni_callback = remember_sni
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    receiver = Receiver(f"{scheme}://{host_name}:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
