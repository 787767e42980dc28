"""Live per-token latency."""

from __future__ import annotations

from app.series_chart import SeriesChart


class LatencyChart(SeriesChart):
    def __init__(self, parent=None) -> None:
        super().__init__(
            "Step time per token",
            "token",
            "step time",
            "ms",
            parent=parent,
        )
        self.setToolTip("each generation's or timed run's first step includes its prefill")
