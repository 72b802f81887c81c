"""Requests that hold a server thread for long: event streams and blocking generation calls.

Waitress serves each request on one of a fixed pool of threads (`--threads`). An open event stream, or an
OpenAI/AUTOMATIC1111 call waiting for its images, pins its thread for as long as it lasts; without a cap, a
dozen such clients would leave none for the short requests (status polls, image fetches, the web UI). So they
share a smaller number of slots, and beyond that are refused with 503 at once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from flask import Flask, current_app, request

from api.context import caller, service
from api.errors import error_response
from core import rules
from core.errors import InvalidRequest
from core.submissions import GenerationRequest
from core.tasks import Task

EXTENSION = "mflux_server.held_requests"
RETRY_AFTER_SECONDS = 5


class AdmissionGate:
    """WSGI middleware: at most `permits` requests run the app's Python at once; the other threads wait here.

    CPython's sqlite3 gives up the GIL for every column of every row it reads (a page of 50 tasks: ~1,300
    times), and with 16 threads runnable each hand-off lets another thread in, which the request must then wait
    out: a task page took 50 ms of wall time for 2-3 ms of CPU (notes in BENCHMARKS.md, benchmark 2). Status
    polls wait here too, in turn with the rest: when they ran beside the gate, their 15 threads were the convoy
    (a page's median 55 ms with polls outside, 13 ms with them in line). A request that blocks for long (a
    blocking generation call, a model load) steps aside while it waits (`HeldRequests.hold`); event streams run
    their bodies after the app has returned. `permits` 0: no gate (`--admitted-requests 0`).
    """

    def __init__(self, permits: int) -> None:
        self.wrapped: Callable | None = None
        self._turns = Turns(permits) if permits > 0 else None
        self._local = threading.local()

    @property
    def waiting(self) -> int:
        """Requests waiting their turn now."""
        return self._turns.waiting if self._turns is not None else 0

    def around(self, wsgi_app: Callable) -> AdmissionGate:
        self.wrapped = wsgi_app
        return self

    def __call__(self, environ: dict, start_response: Callable) -> object:
        if self._turns is None:
            return self.wrapped(environ, start_response)
        self._enter()
        try:
            return self.wrapped(environ, start_response)
        finally:
            self._leave()

    def _enter(self) -> None:
        self._turns.acquire()
        self._local.admitted = True

    def _leave(self) -> None:
        if getattr(self._local, "admitted", False):
            self._local.admitted = False
            self._turns.release()

    @contextmanager
    def stepped_aside(self) -> Iterator[None]:
        """Let other requests run while this one waits (for images, a model load); back in line afterwards."""
        if self._turns is None or not getattr(self._local, "admitted", False):
            yield
            return
        self._leave()
        try:
            yield
        finally:
            self._enter()


class Turns:
    """A semaphore that serves its waiters first come, first served: a permit let go goes straight to the thread
    that has waited longest. (`threading.Semaphore` lets a newcomer take it first, and a woken waiter that finds
    it gone waits again at the back: the tail of the wait had no bound.)"""

    def __init__(self, permits: int) -> None:
        self._free = permits
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self) -> None:
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # until `release` hands this thread the permit

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1


class NoFreeSlot(Exception):
    """Every slot for long-held requests is taken; the message says what to do instead."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The server already holds {limit} long-running requests (event streams and blocking generation "
            f"calls), the most it allows beside short ones; try again in a few seconds, or poll /api/status."
        )
        self.limit = limit
        self.retry_after_seconds = RETRY_AFTER_SECONDS


class HeldRequests:
    def __init__(self, limit: int, gate: AdmissionGate | None = None) -> None:
        self.limit = limit
        self._admission = gate
        self._lock = threading.Lock()
        self._held = 0

    @property
    def held(self) -> int:
        return self._held

    def acquire(self) -> None:
        """Take a slot, or raise `NoFreeSlot`."""
        with self._lock:
            if self._held >= self.limit:
                raise NoFreeSlot(self.limit)
            self._held += 1

    def release(self) -> None:
        with self._lock:
            self._held = max(self._held - 1, 0)

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.acquire()
        try:
            if self._admission is None:
                yield
            else:
                with self._admission.stepped_aside():
                    yield
        finally:
            self.release()


def init_app(app: Flask) -> AdmissionGate:
    """Install the held-request slots and the admission gate; returns the gate, for `create_app` to wrap the
    whole app in (the status fast path included)."""
    gate = AdmissionGate(int(app.config["MFLUX_ADMITTED_REQUESTS"]))
    app.extensions[EXTENSION] = HeldRequests(max(1, int(app.config["MFLUX_MAX_HELD_REQUESTS"])), gate)
    app.register_error_handler(NoFreeSlot, _no_free_slot)
    return gate


def _no_free_slot(error: NoFreeSlot):
    return error_response(503, str(error), {"Retry-After": str(error.retry_after_seconds)})


def held_requests() -> HeldRequests:
    return current_app.extensions[EXTENSION]


def client_disconnected() -> Callable[[], bool]:
    """Whether this request's client has hung up, as waitress tells it (needs `channel_request_lookahead`).

    Waitress only notices a closed connection while a request runs if it keeps reading from the socket, which
    it does when `channel_request_lookahead` > 0 (server.py sets it). Other WSGI servers: never "disconnected".
    """
    return request.environ.get("waitress.client_disconnected") or (lambda: False)


def require_count(count: int) -> None:
    """Refuse a call asking for more images than the server makes per request, before building the requests."""
    if problem := rules.count_problem(count, service().limits):
        raise InvalidRequest({"count": [problem]})


def generate_and_wait(requests: Sequence[GenerationRequest]) -> list[Task]:
    """Queue the images like any others and block until they have ended, as OpenAI and A1111 clients expect.

    Holds one of the long-request slots meanwhile; a client that hangs up has its unfinished tasks cancelled.
    """
    tasks_service = service()
    with held_requests().hold():
        views = tasks_service.submit_all(requests, caller(), awaited=True)
        return tasks_service.wait_final([view.task.id for view in views], cancelled=client_disconnected())
