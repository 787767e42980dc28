"""Live charts keep their axes still while the data stays inside them (a
moving axis is most of a redraw's cost) and always show every point."""

from __future__ import annotations

import pytest

from app.live_plot import nice_ceiling
from app.series_chart import SeriesChart


@pytest.mark.parametrize(
    "value, expected",
    [(0.9, 1), (1, 1), (1.01, 1.2), (47, 50), (61, 80), (801, 1000), (1.1e9, 1.2e9), (0, 1)],
)
def test_nice_ceiling(value, expected):
    assert nice_ceiling(value) == pytest.approx(expected)


def test_series_chart_ranges_cover_the_data_and_step_only_when_left(qtbot):
    chart = SeriesChart("t", "x", "y")
    qtbot.addWidget(chart)
    chart.show()
    for x in range(10):
        chart.add_point(x, 40 + x)
    chart.draw()
    (x0, x1), (y0, y1) = chart.viewRange()
    assert x0 == 0 and x1 >= 9 and y0 == 0 and y1 >= 49
    first = chart.viewRange()
    chart.add_point(10, 45)  # inside the current view: nothing moves
    chart.draw()
    assert chart.viewRange() == first
    chart.add_point(100, 300)  # outside: the view grows to hold it
    chart.draw()
    (_, x1), (_, y1) = chart.viewRange()
    assert x1 >= 100 and y1 >= 300
    chart.clear_points()  # a new run chooses ranges afresh
    chart.add_point(1, 2)
    chart.draw()
    (_, x1), (_, y1) = chart.viewRange()
    assert x1 < 100 and y1 < 300
