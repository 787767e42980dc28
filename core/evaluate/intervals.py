"""Confidence intervals used by the evaluation results.

A mean over few windows (the quick protocol scores 10) gets Student's t
quantile for n - 1 degrees of freedom, not the normal's 1.96: with 10 windows
t is 2.262, so a z interval would be 13% too narrow and cover less than it
claims. No scipy here, so the t quantile is computed from its CDF (the
regularized incomplete beta function, by continued fraction) by bisection.
"""

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


def mean_interval(values: list[float], level: float = 0.95) -> Interval | None:
    """Student-t interval for the mean of ``values`` (None below 2 values)."""
    if len(values) < 2:
        return None
    if not all(math.isfinite(v) for v in values):  # NaN weights: statistics.stdev raises
        return Interval(math.nan, math.nan)  # no interval; the health check names the NaN
    mean = statistics.fmean(values)
    t = t_quantile((1 + level) / 2, len(values) - 1)
    half = t * statistics.stdev(values) / math.sqrt(len(values))
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


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2, 0.5)
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (to ~1e-12)."""
    if not 0 < p < 1 or df <= 0:
        raise ValueError("need 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:  # df=1, p=0.999 needs ~318
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-13 * max(1.0, high):
            break
    return (low + high) / 2


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), by the continued fraction (Lentz's method) on the side where
    it converges fast (Numerical Recipes, section 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    log_front += a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1 - math.exp(log_front) * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result
