"""Axes that read naturally: units as written (no "kms"), ticks rounded to
the spacing between them, and ranges that never collapse to a point.

pyqtgraph prefixes units by itself (SI prefixes), which turns "ms" into
"kms" once values pass 1000, and it prints a tick with as many decimals as
the tick spacing asks for, which for one point (a zero-width range) means
every digit of the float: 23.25753336097595. Every chart in the window uses
these axes instead."""

from __future__ import annotations

import math

import pyqtgraph as pg

MAX_DECIMALS = 4  # more would only show noise between nearly equal ticks
PAD_FRACTION = 0.1  # of the data span, on each side


def tick_text(value: float, spacing: float) -> str:
    """``value`` with as many decimals as ticks ``spacing`` apart need, at most 4;
    very large or very small numbers in short scientific form."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value:.3g}"
    decimals = _decimals(spacing)
    text = f"{round(value, decimals) + 0.0:.{decimals}f}"  # + 0.0: no "-0"
    if float(text) == 0:
        # Ticks finer than 4 decimals (tiny values): short scientific form.
        return f"{value:.3g}" if 0 < spacing < 10**-MAX_DECIMALS else "0"
    return text


def _decimals(spacing: float) -> int:
    """The fewest decimals (at most MAX_DECIMALS) that write ``spacing`` exactly:
    ticks 0.25 apart need two, 0.2 apart one, 5 apart none."""
    if not (spacing > 0 and math.isfinite(spacing)):
        return 0
    for decimals in range(MAX_DECIMALS + 1):
        if abs(round(spacing, decimals) - spacing) <= 1e-6 * spacing:
            return decimals
    return MAX_DECIMALS


class ReadableAxis(pg.AxisItem):
    """An axis whose unit is shown exactly as given and whose ticks are short."""

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph's name)
        return [tick_text(v * scale, spacing * scale) for v in values]


def readable_axes() -> dict[str, ReadableAxis]:
    """``axisItems`` for a PlotWidget/PlotItem: readable left and bottom axes."""
    return {"left": ReadableAxis("left"), "bottom": ReadableAxis("bottom")}


def padded_range(values) -> tuple[float, float]:
    """A view range around ``values`` with room on both sides. One value (or
    all equal) gets +-10% of itself (+-1 around zero) rather than a zero-width
    range, whose ticks would be noise."""
    low, high = min(values), max(values)
    span = high - low
    if span <= 1e-9 * max(abs(low), abs(high), 1.0):
        half = abs(high) * PAD_FRACTION or 1.0
        return low - half, high + half
    return low - span * PAD_FRACTION, high + span * PAD_FRACTION
