"""The base of every live chart: data is buffered as it arrives and drawn
on a timer, not once per sample (pyqtgraph's scrolling-plot idiom)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

from app.chart_axes import readable_axes

# A redraw costs 10-45 ms of Python on the GUI thread (pyqtgraph re-ranges the
# axes and rebuilds the path), holding the GIL the model's worker thread needs
# between torch ops: at 5 redraws a second the window decoded 1.4-1.6x slower
# than the CLI (benchmarks/gui_responsiveness.py). Once a second, with charts
# offset from each other so no two redraw back to back, keeps every GUI
# pause short and leaves the worker its time.
REDRAW_MS = 1000
STAGGER_MS = 170
_NICE = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)


def nice_ceiling(value: float) -> float:
    """The smallest 1-1.2-1.5-2-2.5-3-4-5-6-8 x 10^k at or above ``value``."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    return next(m * scale for m in _NICE if m * scale >= value * (1 - 1e-12))


class GrowingSeries:
    """An append-only (x, y) buffer that doubles its capacity when full."""

    def __init__(self, capacity: int = 256) -> None:
        self._data = np.empty((capacity, 2))
        self.size = 0

    def append(self, x: float, y: float) -> None:
        if self.size == len(self._data):
            grown = np.empty((2 * len(self._data), 2))
            grown[: self.size] = self._data
            self._data = grown
        self._data[self.size] = (x, y)
        self.size += 1

    def clear(self) -> None:
        self.size = 0

    @property
    def x(self) -> np.ndarray:
        return self._data[: self.size, 0]

    @property
    def y(self) -> np.ndarray:
        return self._data[: self.size, 1]


class LivePlot(pg.PlotWidget):
    _instances = 0  # for staggering the redraw timers
    """A plot whose subclasses append to buffers, call ``mark_dirty`` and
    implement ``draw``; drawing happens at most every REDRAW_MS."""

    def __init__(self, title: str, x_label: str, y_label: str, y_units=None, parent=None):
        # Units as given ("ms", never "kms"), ticks rounded to their spacing.
        super().__init__(parent, background="w", axisItems=readable_axes())
        self.setLabel("bottom", x_label)
        self.setLabel("left", y_label, units=y_units)
        self.setTitle(title, size="9pt")
        # No grid and stepped ranges (fit_view): pyqtgraph draws the grid
        # and the tick labels in its axis items, and replaying them was most
        # of a redraw's cost (measured: median 14.9 ms with the grid, 6.2
        # without); with ranges that change only when the data leaves them,
        # most redraws repaint the curve alone.
        self.disableAutoRange()
        self._view: tuple[float, float, float] | None = None
        self.curve = None  # the main curve, set by subclasses
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw)
        offset = (LivePlot._instances * STAGGER_MS) % REDRAW_MS
        LivePlot._instances += 1
        QTimer.singleShot(offset, self._timer, self._timer.start)  # dropped if deleted first

    def mark_dirty(self) -> None:
        self._dirty = True

    empty_y_range = (0.0, 1.0)  # an empty chart's y axis (the memory chart's is 1 MB)

    def reset_view(self) -> None:
        """A new series starts: the next fit_view chooses ranges afresh, and
        until it does the axes are back to the empty ones (an empty chart
        kept the last run's or model's scale: 0 to 120,000 of perplexity)."""
        self._view = None
        self.setRange(xRange=(0.0, 1.0), yRange=self.empty_y_range, padding=0)
        self.mark_dirty()

    def fit_view(self, x_max: float, y_min: float, y_max: float) -> None:
        """Show x from 0 and y from 0 (or below, for negative data), to nice
        bounds; change them only when the data leaves the current ones."""
        view = self._view
        if view is not None and x_max <= view[0] and view[1] <= y_min and y_max <= view[2]:
            return
        low = 0.0 if y_min >= 0 else -nice_ceiling(-y_min)
        # x is a count or seconds: at least 1, so one early sample (t = 5 us)
        # does not make an axis of microseconds.
        self._view = (nice_ceiling(max(x_max, 1.0)), low, nice_ceiling(y_max))
        self.setRange(xRange=(0, self._view[0]), yRange=self._view[1:], padding=0)

    def points_drawn(self) -> int:
        x, _ = self.curve.getData()
        return 0 if x is None else len(x)

    def draw(self) -> None:
        raise NotImplementedError

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._redraw()  # what arrived while hidden, at once

    def _redraw(self) -> None:
        if self._dirty and self.isVisible():  # a hidden chart draws when shown again
            self.draw()
            self._dirty = False
