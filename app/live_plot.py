"""The base of every live chart: data is buffered as it arrives and drawn
on a timer, not once per sample (pyqtgraph's scrolling-plot idiom)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

# A redraw costs 10-45 ms of Python on the GUI thread (pyqtgraph re-ranges the
# axes and rebuilds the path), holding the GIL the model's worker thread needs
# between torch ops: at 5 redraws a second the window decoded 1.4-1.6x slower
# than the CLI (benchmarks/gui_responsiveness.py). Once a second, with charts
# offset from each other so no two redraw back to back, keeps every GUI
# pause short and leaves the worker its time.
REDRAW_MS = 1000
STAGGER_MS = 170


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
        super().__init__(parent, background="w")
        self.setLabel("bottom", x_label)
        self.setLabel("left", y_label, units=y_units)
        self.setTitle(title, size="9pt")
        self.showGrid(x=True, y=True, alpha=0.3)
        self.curve = None  # the main curve, set by subclasses
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw)
        offset = (LivePlot._instances * STAGGER_MS) % REDRAW_MS
        LivePlot._instances += 1
        QTimer.singleShot(offset, self._timer.start)

    def mark_dirty(self) -> None:
        self._dirty = True

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
