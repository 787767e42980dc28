"""Perplexity converging as windows are scored, with its 95% band."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QTimer

from app.latency_chart import REDRAW_MS, GrowingSeries


class PerplexityChart(pg.PlotWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent, background="w")
        self.setLabel("bottom", "windows scored")
        self.setLabel("left", "perplexity")
        self.setTitle("Perplexity while evaluating (band: 95% interval)", size="9pt")
        self.showGrid(x=True, y=True, alpha=0.3)
        self.value = GrowingSeries()
        self.low = GrowingSeries()
        self.high = GrowingSeries()
        self.curve = self.plot(pen=pg.mkPen("#2ca02c", width=2), symbol="o", symbolSize=5)
        self.low_curve = self.plot(pen=pg.mkPen(None))
        self.high_curve = self.plot(pen=pg.mkPen(None))
        self.band = pg.FillBetweenItem(self.low_curve, self.high_curve, brush=(44, 160, 44, 50))
        self.addItem(self.band)
        self._dirty = False
        timer = QTimer(self)
        timer.setInterval(REDRAW_MS)
        timer.timeout.connect(self._redraw)
        timer.start()

    def clear_points(self) -> None:
        for series in (self.value, self.low, self.high):
            series.clear()
        self._dirty = True

    def add_point(self, windows: int, ppl: float, halfwidth: float | None) -> None:
        self.value.append(windows, ppl)
        if halfwidth is not None:
            self.low.append(windows, ppl - halfwidth)
            self.high.append(windows, ppl + halfwidth)
        self._dirty = True

    def points_drawn(self) -> int:
        x, _ = self.curve.getData()
        return 0 if x is None else len(x)

    def _redraw(self) -> None:
        if self._dirty:
            self.curve.setData(self.value.x, self.value.y)
            self.low_curve.setData(self.low.x, self.low.y)
            self.high_curve.setData(self.high.x, self.high.y)
            # FillBetweenItem keeps its old path when its curves empty out.
            self.band.setVisible(self.low.size > 1)
            self._dirty = False
