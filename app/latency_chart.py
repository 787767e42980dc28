"""Live per-token latency."""

from __future__ import annotations

from app.series_chart import SeriesChart


class LatencyChart(SeriesChart):
    def __init__(self, parent=None) -> None:
        super().__init__(
            "Per-token latency (first token includes prefill)",
            "token",
            "step time",
            "ms",
            parent=parent,
        )
