"""Confidence intervals used by the evaluation results."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

Z95 = statistics.NormalDist().inv_cdf(0.975)  # 1.95996...


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def halfwidth(self) -> float:
        return (self.high - self.low) / 2


def mean_interval(values: list[float], z: float = Z95) -> Interval | None:
    """Normal-approximation interval for the mean of ``values`` (None below 2 values)."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = z * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean - half, mean + half)


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval for a proportion: unlike mean +- z*SE it stays in
    [0, 1] and keeps its coverage for small n or rates near 0 or 1."""
    if n == 0:
        return Interval(0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))
