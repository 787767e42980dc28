"""Live per-token latency: points are buffered as they arrive and the curve
is redrawn on a timer, not once per token (pyqtgraph's scrolling-plot idiom)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

REDRAW_MS = 100


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


class LatencyChart(pg.PlotWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent, background="w")
        self.setLabel("bottom", "token")
        self.setLabel("left", "step time", units="ms")
        self.setTitle("Per-token latency (first token includes prefill)", size="9pt")
        self.showGrid(x=True, y=True, alpha=0.3)
        self.setClipToView(True)
        self.setDownsampling(mode="peak")
        self.series = GrowingSeries()
        self.curve = self.plot(pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=4)
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw)
        self._timer.start()

    def clear_points(self) -> None:
        self.series.clear()
        self._dirty = True

    def add_point(self, index: int, step_ms: float) -> None:
        self.series.append(index, step_ms)
        self._dirty = True

    def points_drawn(self) -> int:
        x, _ = self.curve.getData()
        return 0 if x is None else len(x)

    def _redraw(self) -> None:
        if self._dirty:
            self.curve.setData(self.series.x, self.series.y)
            self._dirty = False
