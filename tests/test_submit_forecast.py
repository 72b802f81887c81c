"""The forecast a client gets when it submits: the engine's work ahead of it, and its own work, each once."""

from __future__ import annotations

import pytest

from taskqueue.forecast import MEGAPIXEL, Workload
from taskqueue.service import GenerationRequest, ServiceSettings, TaskService
from worker.engines.base import EngineConfig
from worker.protocol import Ready


class RecordingSink:
    """Stands in for the worker's supervisor: takes the tasks the scheduler dispatches."""

    def __init__(self) -> None:
        self.sent = []

    def submit(self, message) -> bool:
        self.sent.append(message)
        return True


@pytest.fixture
def service(tmp_path):
    service = TaskService(ServiceSettings(data_dir=tmp_path, engine=EngineConfig(engine="demo", demo_speed=10)))
    sink = RecordingSink()
    service.scheduler.attach(sink)
    service.scheduler.on_message(Ready(service.info, 0.1))  # an engine that is loaded and idle
    yield service, sink
    service.store.close()


def own_seconds(service: TaskService, width: int, height: int, steps: int) -> float:
    render = service.forecaster.model.seconds(Workload.of(width, height, steps))
    return render + service.forecaster.encode.seconds("JPEG", width * height / MEGAPIXEL)


def test_a_task_for_an_idle_engine_is_forecast_at_its_own_time_not_twice_it(service):
    service, sink = service
    view = service.submit(GenerationRequest("alone", width=1024, height=768, steps=4))
    assert [m.task_id for m in sink.sent] == [view.task.id]  # it went straight to the engine
    assert view.wait_remaining == pytest.approx(own_seconds(service, 1024, 768, 4), rel=1e-9)
    assert view.tasks_ahead == 0


def test_a_task_behind_a_running_one_waits_for_it_and_then_its_own_time(service):
    service, sink = service
    first = service.submit(GenerationRequest("first", width=512, height=512, steps=2))
    second = service.submit(GenerationRequest("second", width=1024, height=1024, steps=4))
    assert len(sink.sent) == 1 and second.tasks_ahead == 1
    first_left = service.forecaster.model.seconds(Workload.of(512, 512, 2))  # not started: all of it is left
    assert second.wait_remaining == pytest.approx(first_left + own_seconds(service, 1024, 1024, 4), rel=1e-6)
    assert first.wait_remaining == pytest.approx(own_seconds(service, 512, 512, 2), rel=1e-9)
