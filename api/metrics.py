"""GET /metrics: the queue and its worker in Prometheus' text format, for a scraper.

Each app has its own `CollectorRegistry`, never the process-wide default one, so that `create_app` can run
many times in one process. The registry holds one collector that, when scraped, reads the service's current
state (queue depth, worker, stored images) and adds the counters and histograms the scheduler keeps
(taskqueue/metrics.py, through the service). Nothing here holds prompt text.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response, current_app
from flask.views import MethodView
from flask_smorest import Api
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from api.context import service_of
from api.smorest import ApiBlueprint
from taskqueue.service import TaskService

EXTENSION = "mflux_server.metrics"

blp = ApiBlueprint("metrics", __name__, description="Metrics for Prometheus.")


def init_app(app: Flask, api: Api) -> None:
    app.extensions[EXTENSION] = registry_for(service_of(app))
    api.register_blueprint(blp)


def registry_for(service: TaskService) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceState(service))
    return registry


class ServiceState:
    """A prometheus_client collector: the service's state, read at scrape time, plus its counters."""

    def __init__(self, service: TaskService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        health = service.health()
        tasks = GaugeMetricFamily("mflux_tasks", "Tasks the server holds, by status.", labels=["status"])
        for status, count in service.count_by_status().items():
            tasks.add_metric([status], count)
        yield tasks
        yield GaugeMetricFamily(
            "mflux_healthy", "1 when /api/health answers 200: worker alive, engine loaded or loading.", health.ok
        )
        yield GaugeMetricFamily("mflux_worker_alive", "1 while the worker process runs.", health.worker_alive)
        yield GaugeMetricFamily("mflux_model_loaded", "1 once the engine is loaded.", health.model_loaded)
        yield CounterMetricFamily(
            "mflux_worker_restarts", "Times the worker process died and was started again.", health.worker_restarts
        )
        images, image_bytes = service.stored_images()
        yield GaugeMetricFamily("mflux_images_stored", "Finished images waiting to be fetched.", images)
        yield GaugeMetricFamily("mflux_image_bytes_stored", "Bytes of the images waiting to be fetched.", image_bytes)
        info = GaugeMetricFamily("mflux_engine_info", "The engine and model being served.", labels=["engine", "model"])
        info.add_metric([health.engine, health.model], 1)
        yield info
        yield from _per_worker(service)
        yield from service.counters()


def _per_worker(service: TaskService) -> Iterator[Metric]:
    """Each worker (this server's own, "local", and those on other machines) by name."""
    up = GaugeMetricFamily("mflux_worker_up", "1 while a worker can take tasks.", labels=["worker"])
    busy = GaugeMetricFamily("mflux_worker_busy", "1 while a worker renders (or loads for) a task.", labels=["worker"])
    done = CounterMetricFamily("mflux_worker_images", "Images a worker rendered since it joined.", labels=["worker"])
    speed = GaugeMetricFamily("mflux_worker_speed", "A worker's measured time against the priors (2: twice as "
                              "slow).", labels=["worker"])  # fmt: skip
    for worker in service.workers():
        up.add_metric([worker.name], worker.state in ("ready", "busy", "loading"))
        busy.add_metric([worker.name], worker.task_id is not None)
        done.add_metric([worker.name], worker.tasks_done)
        if worker.speed is not None:
            speed.add_metric([worker.name], worker.speed)
    yield from (up, busy, done, speed)


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.response(200, content_type="text/plain", description="Prometheus text exposition format.")
    @blp.doc(responses={"200": {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self):
        """Queue depth by status, tasks by outcome, step and task durations, forecast error, worker restarts,
        stored images: for Prometheus to scrape."""
        return Response(generate_latest(current_app.extensions[EXTENSION]), content_type=CONTENT_TYPE_LATEST)
