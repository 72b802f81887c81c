"""Summaries of measured samples: percentiles, and the error of forecasts against what happened."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0..1) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """A distribution of durations, in seconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        data = list(values)
        if not data:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            len(data),
            sum(data) / len(data),
            percentile(data, 0.50),
            percentile(data, 0.90),
            percentile(data, 0.99),
            max(data),
        )

    def ms(self) -> list[str]:
        """mean, p50, p90, p99, max in milliseconds, for a table row."""
        return [milliseconds(x) for x in (self.mean, self.p50, self.p90, self.p99, self.max)]


SUMMARY_HEADERS = ["n", "mean", "p50", "p90", "p99", "max"]


def milliseconds(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    value = seconds * 1000
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def absolute_percentage_error(forecast: float, actual: float) -> float:
    """|forecast - actual| / actual, as a fraction (0.1 = 10 %)."""
    if actual <= 0:
        raise ValueError(f"actual must be positive, not {actual}")
    return abs(forecast - actual) / actual


def mape(pairs: Iterable[tuple[float, float]]) -> float:
    """Mean absolute percentage error of (forecast, actual) pairs, as a fraction; NaN if there are none."""
    errors = [absolute_percentage_error(forecast, actual) for forecast, actual in pairs]
    return sum(errors) / len(errors) if errors else math.nan


def percent(fraction: float) -> str:
    return "-" if math.isnan(fraction) else f"{100 * fraction:.1f} %"
