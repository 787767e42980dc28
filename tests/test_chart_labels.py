"""Chart labels read naturally: units as written (no "kms"), short ticks for
one point, one size unit (MB) in every chart and table."""

from __future__ import annotations

import pytest

from app.chart_axes import padded_range, tick_text
from app.latency_chart import LatencyChart
from app.live_run_view import LiveRunView
from app.pareto_chart import ParetoChart
from app.sizes import size_text
from core.results.store import RunRecord


def record(**changes) -> RunRecord:
    fields = dict(
        model="m",
        recipe={"passes": []},
        recipe_name="original",
        bytes=134_515_008,
        bytes_by_component={},
        prefill_ms=50.0,
        decode_ms_per_token=23.25753336097595,
        tokens_per_s=43.0,
        ppl=18.456789123456,
        ppl_ci95=1.0,
        top1_agreement=None,
        mean_kl=None,
        device="cpu",
        threads=2,
        bench_protocol="b",
        eval_protocol="e",
    )
    return RunRecord.from_dict({**fields, **changes})


def shown_ticks(plot_widget, name: str, scale: float = 1) -> list[str]:
    """The tick strings ``name``'s axis draws for the current view."""
    axis = plot_widget.getAxis(name)
    low, high = plot_widget.viewRange()[0 if name == "bottom" else 1]
    levels = axis.tickValues(low, high, 600)
    return [s for spacing, values in levels for s in axis.tickStrings(values, scale, spacing)]


def test_step_time_axis_says_ms_even_past_a_thousand(qtbot):
    chart = LatencyChart()
    qtbot.addWidget(chart)
    chart.show()
    for i in range(5):
        chart.add_point(i, 1500.0 + i)  # a long prefill: pyqtgraph would say "kms"
    chart.draw()
    label = chart.getAxis("left").labelString()
    assert "(ms)" in label and "kms" not in label
    assert all("e" not in t and len(t) <= 6 for t in shown_ticks(chart, "left"))


def test_memory_axis_is_in_mb(qtbot):
    view = LiveRunView()
    qtbot.addWidget(view)
    view.show()
    view.begin()
    view.end()
    view.memory.draw()
    axis = view.memory.getAxis("left")
    assert "(MB)" in axis.labelString()
    top = view.memory.viewRange()[1][1]  # bytes: the process's RSS, rounded up
    ticks = shown_ticks(view.memory, "left", axis.scale)
    values = [float(t) for t in ticks]  # plain numbers of MB, not bytes
    assert top / 1e6 / 3 <= max(values) <= top / 1e6, ticks


def test_one_point_pareto_chart_has_short_ticks(qtbot):
    chart = ParetoChart()
    qtbot.addWidget(chart)
    chart.resize(800, 500)
    chart.show()
    chart.add(record())
    for axis in ("bottom", "left"):
        ticks = shown_ticks(chart.plot, axis)
        assert ticks and max(len(t) for t in ticks) <= 5, ticks
        low, high = chart.plot.viewRange()[0 if axis == "bottom" else 1]
        assert high - low > 1  # a real range around the point, not a zero-width one


@pytest.mark.parametrize(
    "value, spacing, text",
    [
        (23.25753336097595, 0.2, "23.3"),
        (0.25, 0.25, "0.25"),
        (-1e-17, 0.5, "0"),
        (1500, 500, "1500"),
        (18.456789123399858, 1e-14, "18.4568"),  # never more than 4 decimals
        (3e-5, 1e-5, "3e-05"),
        (1.2e9, 2e8, "1.2e+09"),
    ],
)
def test_tick_text(value, spacing, text):
    assert tick_text(value, spacing) == text


def test_padded_range_never_collapses():
    assert padded_range([23.0]) == pytest.approx((20.7, 25.3))
    assert padded_range([0.0, 0.0]) == (-1.0, 1.0)
    assert padded_range([1.0, 3.0]) == pytest.approx((0.8, 3.2))


def test_sizes_are_mb_everywhere():
    assert size_text(134_515_008) == "134.5 MB"
    assert size_text(30_000) == "0.03 MB"  # a tiny model is not "0.0"
    assert size_text(None) == "n/a"
    assert size_text(1) == "<0.001 MB" and size_text(256) == "<0.001 MB"  # not "1e-06 MB"
