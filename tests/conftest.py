"""Fixtures every tier shares: in-process services (tier 1 and 2) and real server processes (tier 3)."""

from __future__ import annotations

import dataclasses

import pytest

from api import create_app
from core.engines import EngineConfig
from harness.server_process import RunningServer
from taskqueue.assembly import assemble
from taskqueue.parts import Parts
from taskqueue.service import TaskService
from taskqueue.settings import ServiceSettings
from worker.protocol import Loaded, Ready


@pytest.fixture
def parts_factory(tmp_path):
    """Assemble in-process queues (store, scheduler, forecaster, …) whose worker is not started; closed afterwards.

    Keyword arguments replace fields of the default ServiceSettings (demo engine at speed 100).
    """
    made: list[Parts] = []

    def make(name: str = "data", **overrides) -> Parts:
        base = ServiceSettings(data_dir=tmp_path / name, engine=EngineConfig(engine="demo", demo_speed=100))
        parts = assemble(dataclasses.replace(base, **overrides))
        made.append(parts)
        return parts

    yield make
    for parts in made:
        parts.store.close()


@pytest.fixture
def parts(parts_factory) -> Parts:
    return parts_factory()


@pytest.fixture
def service(parts) -> TaskService:
    """The façade over `parts`: every accepted task stays waiting (no worker runs)."""
    return TaskService(parts)


@pytest.fixture
def client(service):
    return create_app({"TESTING": True}, service=service).test_client()


class RecordingSink:
    """Stands in for the worker's supervisor: takes the messages the scheduler sends the worker."""

    def __init__(self) -> None:
        self.sent = []

    def send(self, message) -> bool:
        self.sent.append(message)
        return True


@pytest.fixture
def idle_engine(parts) -> RecordingSink:
    """A worker that is ready with the default model loaded, and idle: the scheduler hands it tasks, which the
    returned sink records."""
    sink = RecordingSink()
    parts.scheduler.attach(sink, live=parts.table)  # progress, as the worker writes it, in the status table
    parts.scheduler.on_message(Ready("demo"))
    parts.scheduler.on_message(Loaded(parts.scheduler.default_variant.key, 0.1))
    sink.sent.clear()  # the preload of the default model
    return sink


@pytest.fixture
def server_factory(tmp_path):
    """Start real servers (waitress + worker process) on free loopback ports; all are stopped afterwards.

    A server that cannot stop cleanly within the timeout fails the test that started it.
    """
    started: list[RunningServer] = []

    def start(*args: str, data_dir=None, start: bool = True, **kwargs) -> RunningServer:
        server = RunningServer(data_dir or tmp_path / "data", args, **kwargs)
        started.append(server)
        return server.start() if start else server

    yield start
    failures = [problem for server in started if (problem := _stop_cleanly(server))]
    if failures:
        pytest.fail("server shutdown was not clean:\n" + "\n".join(failures))


def _stop_cleanly(server: RunningServer) -> str | None:
    """Stop a server a test left running; what went wrong, if anything: it died by itself, hung or failed."""
    if server.process is None:
        return None
    if server.process.poll() is not None:
        if server.ended_by is None:
            return f"{server.url}: exited by itself with {server.process.returncode}\n{server.log_text()}"
        return None
    try:
        code = server.stop(timeout=30)
    except Exception as error:  # it hung: it has been killed; say so
        return f"{server.url}: did not stop within 30 s ({error!r})\n{server.log_text()}"
    if code != 0:
        return f"{server.url}: exited with {code} on SIGTERM\n{server.log_text()}"
    return None


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One demo server for tests that only read or add their own tasks."""
    server = RunningServer(tmp_path_factory.mktemp("shared") / "data", demo_speed=100).start()
    yield server
    code = server.stop(timeout=30)
    assert code == 0, f"the shared server exited with {code} on SIGTERM:\n{server.log_text()}"
