"""Live per-token latency."""

from __future__ import annotations

import pyqtgraph as pg

from app.live_plot import GrowingSeries, LivePlot


class LatencyChart(LivePlot):
    def __init__(self, parent=None) -> None:
        super().__init__(
            "Per-token latency (first token includes prefill)", "token", "step time", "ms", parent
        )
        self.setClipToView(True)
        self.setDownsampling(mode="peak")
        self.series = GrowingSeries()
        self.curve = self.plot(pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=4)

    def clear_points(self) -> None:
        self.series.clear()
        self.mark_dirty()

    def add_point(self, index: int, step_ms: float) -> None:
        self.series.append(index, step_ms)
        self.mark_dirty()

    def draw(self) -> None:
        self.curve.setData(self.series.x, self.series.y)
