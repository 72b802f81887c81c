"""What the queue counts while it runs: outcomes, durations, forecast error, for GET /metrics.

The numbers live in prometheus_client metrics that belong to no registry. Each Flask app builds its own
`CollectorRegistry` and collects them beside the state it reads at scrape time (api/metrics.py), so services
and apps can be created many times in one process, as the tests do, without clashing over global names.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

OUTCOMES = ("done", "failed", "cancelled")

# Real models take seconds to minutes per image; the demo engine in the tests takes milliseconds.
ENGINE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
LATENCY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
ERROR_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)


class QueueMetrics(Collector):
    """Counters and histograms the scheduler and the service update as tasks move; thread-safe."""

    def __init__(self) -> None:
        self.finished = Counter(
            "mflux_tasks_finished", "Tasks that reached an end state, by outcome.", ["outcome"], registry=None
        )
        for outcome in OUTCOMES:  # exported as 0 from the start, so rate() works before the first failure
            self.finished.labels(outcome)
        self.retried = Counter(
            "mflux_tasks_retried", "Tasks put back in the queue because the worker died running them.", registry=None
        )
        self.engine_seconds = Histogram(
            "mflux_task_engine_seconds",
            "Seconds each task held the engine, from its start to its rendered pixels (encoding excluded).",
            buckets=ENGINE_BUCKETS,
            registry=None,
        )
        self.step_seconds = Histogram(
            "mflux_step_seconds",
            "Mean seconds per denoising step, one observation per rendered task.",
            buckets=STEP_BUCKETS,
            registry=None,
        )
        self.latency_seconds = Histogram(
            "mflux_task_latency_seconds",
            "Seconds from submission to the stored image, queueing included.",
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.forecast_error = Histogram(
            "mflux_forecast_relative_error",
            "|forecast - actual| / actual of each task's engine seconds, forecast by the model it ran under.",
            buckets=ERROR_BUCKETS,
            registry=None,
        )

    def task_finished(self, outcome: str) -> None:
        self.finished.labels(outcome).inc()

    def task_rendered(self, forecast_seconds: float, engine_seconds: float, step_seconds: float | None) -> None:
        self.engine_seconds.observe(engine_seconds)
        if step_seconds is not None:
            self.step_seconds.observe(step_seconds)
        if engine_seconds > 0:
            self.forecast_error.observe(abs(forecast_seconds - engine_seconds) / engine_seconds)

    def collect(self) -> Iterator[Metric]:
        for metric in (
            self.finished,
            self.retried,
            self.engine_seconds,
            self.step_seconds,
            self.latency_seconds,
            self.forecast_error,
        ):
            yield from metric.collect()
