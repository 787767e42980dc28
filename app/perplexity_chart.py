"""Perplexity converging as windows are scored, with its 95% band."""

from __future__ import annotations

import pyqtgraph as pg

from app.live_plot import GrowingSeries, LivePlot


class PerplexityChart(LivePlot):
    def __init__(self, parent=None) -> None:
        super().__init__(
            "Perplexity while evaluating",
            "windows scored",
            "perplexity",
            parent=parent,
        )
        self.setToolTip("perplexity of the windows scored so far; the band is its 95% interval")
        self.value = GrowingSeries()
        self.low = GrowingSeries()
        self.high = GrowingSeries()
        self.curve = self.plot(pen=pg.mkPen("#2ca02c", width=2), symbol="o", symbolSize=5)
        self.low_curve = self.plot(pen=pg.mkPen(None))
        self.high_curve = self.plot(pen=pg.mkPen(None))
        self.band = pg.FillBetweenItem(self.low_curve, self.high_curve, brush=(44, 160, 44, 50))
        self.addItem(self.band)

    def clear_points(self) -> None:
        for series in (self.value, self.low, self.high):
            series.clear()
        self.reset_view()

    def add_point(self, windows: int, ppl: float, low: float | None, high: float | None) -> None:
        """``low``/``high``: the 95% interval as computed (asymmetric: exp of
        the mean NLL's interval), never ppl +- a half width, which would
        draw below zero while few windows are scored."""
        self.value.append(windows, ppl)
        if low is not None and high is not None:
            self.low.append(windows, low)
            self.high.append(windows, high)
        self.mark_dirty()

    def draw(self) -> None:
        self.curve.setData(self.value.x, self.value.y)
        self.low_curve.setData(self.low.x, self.low.y)
        self.high_curve.setData(self.high.x, self.high.y)
        # FillBetweenItem keeps its old path when its curves empty out.
        self.band.setVisible(self.low.size > 1)
        if self.value.size:
            low = self.low.y if self.low.size else self.value.y
            high = self.high.y if self.high.size else self.value.y
            self.fit_view(float(self.value.x.max()), float(low.min()), float(high.max()))
