"""Student-t intervals for means over few windows."""

import math
import statistics

import pytest

from core.evaluate.intervals import Z95, mean_interval, regularized_beta, t_cdf, t_quantile


@pytest.mark.parametrize(
    "p, df, expected",
    [
        (0.975, 9, 2.262157),  # 10 windows: the quick protocol
        (0.975, 1, 12.706205),
        (0.975, 30, 2.042272),
        (0.975, 3, 3.182446),
        (0.995, 5, 4.032143),
        (0.95, 20, 1.724718),
        (0.999, 1, 318.308839),
    ],
)
def test_t_quantile_matches_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=2e-6)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=2e-6)


def test_t_tends_to_the_normal_and_its_cdf_inverts():
    assert t_quantile(0.975, 100_000) == pytest.approx(Z95, abs=1e-4)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-9)
    for df in (1, 2.5, 9, 40):
        for t in (-3.0, -0.4, 0.0, 1.1, 6.0):
            assert t_quantile(t_cdf(t, df), df) == pytest.approx(t, abs=1e-7)
    # df = 1 is the Cauchy distribution: CDF 1/2 + atan(t)/pi.
    assert t_cdf(2.0, 1) == pytest.approx(0.5 + math.atan(2.0) / math.pi, abs=1e-12)


def test_regularized_beta_closed_forms():
    # I_x(a, 1) = x^a and I_x(1, b) = 1 - (1 - x)^b.
    assert regularized_beta(0.3, 2.5, 1) == pytest.approx(0.3**2.5, rel=1e-12)
    assert regularized_beta(0.8, 1, 3.5) == pytest.approx(1 - 0.2**3.5, rel=1e-12)
    assert regularized_beta(0.0, 2, 3) == 0.0 and regularized_beta(1.0, 2, 3) == 1.0


def test_mean_interval_uses_t_for_n_minus_one_degrees():
    values = [2.1, 2.5, 1.9, 2.8, 2.2, 2.0, 2.6, 2.4, 2.3, 1.7]
    interval = mean_interval(values)
    se = statistics.stdev(values) / math.sqrt(len(values))
    assert interval.halfwidth == pytest.approx(2.262157 * se, rel=1e-6)
    assert (interval.low + interval.high) / 2 == pytest.approx(statistics.fmean(values))
    assert mean_interval(values[:2]).halfwidth == pytest.approx(
        12.706205 * statistics.stdev(values[:2]) / math.sqrt(2), rel=1e-6
    )
    assert mean_interval([1.0]) is None
    assert mean_interval(values, level=0.9).halfwidth < interval.halfwidth
