from __future__ import annotations

import pytest

from tests.support.server_process import RunningServer


@pytest.fixture
def server_factory(tmp_path):
    """Start real servers (waitress + worker process) on free loopback ports; all are stopped afterwards."""
    started: list[RunningServer] = []

    def start(*args: str, data_dir=None, start: bool = True, **kwargs) -> RunningServer:
        server = RunningServer(data_dir or tmp_path / "data", args, **kwargs)
        started.append(server)
        return server.start() if start else server

    yield start
    for server in started:
        try:
            server.stop(timeout=30)
        except Exception:
            server.kill()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One demo server for tests that only read or add their own tasks."""
    with RunningServer(tmp_path_factory.mktemp("shared") / "data", demo_speed=100) as server:
        yield server
