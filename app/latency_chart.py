"""Live per-token latency."""

from __future__ import annotations

from app.series_chart import SeriesChart

TITLE = "Step time per token"


class LatencyChart(SeriesChart):
    def __init__(self, parent=None) -> None:
        super().__init__(
            TITLE,
            "token",
            "step time",
            "ms",
            parent=parent,
        )
        self.setToolTip("each generation's or timed run's first step includes its prefill")
