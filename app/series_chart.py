"""A live chart of one growing (x, y) series: latency per token, throughput,
memory. Points are buffered and drawn on the LivePlot timer."""

from __future__ import annotations

import pyqtgraph as pg

from app.live_plot import GrowingSeries, LivePlot

# Symbols make a short series readable, but pyqtgraph draws each one: past
# this many points the curve is drawn as a line only, so a long benchmark's
# redraws stay cheap and the GUI thread leaves the cores to the model.
MAX_SYMBOLS = 200


class SeriesChart(LivePlot):
    def __init__(
        self, title: str, x_label: str, y_label: str, y_units=None, color="#1f77b4", parent=None
    ) -> None:
        super().__init__(title, x_label, y_label, y_units, parent)
        self.setClipToView(True)
        self.setDownsampling(auto=True, mode="peak")  # at most ~2 points per pixel
        self.series = GrowingSeries()
        # A 1-pixel pen: Qt's raster engine strokes wider pens far more slowly.
        self.curve = self.plot(pen=pg.mkPen(color, width=1), symbol="o", symbolSize=4)
        self.curve.setSymbolBrush(color)
        self.curve.setSkipFiniteCheck(True)
        self._symbols = True

    def clear_points(self) -> None:
        self.series.clear()
        self.reset_view()

    def add_point(self, x: float, y: float) -> None:
        self.series.append(x, y)
        self.mark_dirty()

    def draw(self) -> None:
        symbols = self.series.size <= MAX_SYMBOLS
        if symbols != self._symbols:
            self.curve.setSymbol("o" if symbols else None)
            self._symbols = symbols
        self.curve.setData(self.series.x, self.series.y)
        if self.series.size:
            y = self.series.y
            self.fit_view(float(self.series.x.max()), float(y.min()), float(y.max()))
