"""The Live run tab: per-token latency, throughput and memory while a
configuration is benchmarked, and perplexity converging while it is
evaluated. Fed with the run job's events; memory is sampled on a timer."""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QSplitter

from app.latency_chart import LatencyChart
from app.perplexity_chart import PerplexityChart
from app.series_chart import SeriesChart
from app.sizes import MB, UNIT
from core.measure.memory import current_memory_bytes

MEMORY_SAMPLE_MS = 250
THROUGHPUT_WINDOW = 8  # decode steps averaged for the throughput curve


STEP_TITLE = "Benchmark: per-token step time, all runs (warm-up included)"


class LiveRunView(QSplitter):
    def __init__(self, parent=None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.latency = LatencyChart()
        self.throughput = SeriesChart(
            f"Decode throughput (mean of the last {THROUGHPUT_WINDOW} steps)",
            "token",
            "tokens/s",
            color="#ff7f0e",
        )
        self.memory = SeriesChart(
            "Memory while running (process RSS, or CUDA allocated on a GPU)",
            "seconds",
            "memory",
            UNIT,
            color="#9467bd",
        )
        self.memory.getAxis("left").setScale(1 / MB)  # bytes drawn, MB written
        self.perplexity = PerplexityChart()
        self.accuracy = SeriesChart(
            "Classifier accuracy while evaluating (test reviews)",
            "reviews scored",
            "accuracy",
            color="#2ca02c",
        )
        self.top_row = QSplitter(Qt.Orientation.Horizontal)
        self.top_row.addWidget(self.latency)
        self.top_row.addWidget(self.throughput)
        self.bottom_row = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_row.addWidget(self.perplexity)
        self.bottom_row.addWidget(self.accuracy)
        self.bottom_row.addWidget(self.memory)
        self.addWidget(self.top_row)
        self.addWidget(self.bottom_row)
        self._tokens = 0
        self._recent: deque[float] = deque(maxlen=THROUGHPUT_WINDOW)
        self._started = time.monotonic()
        self._device = None
        self._sampler = QTimer(self)
        self._sampler.setInterval(MEMORY_SAMPLE_MS)
        self._sampler.timeout.connect(self._sample_memory)

    def begin(self, device=None, classifier: bool = False, what: str = "") -> None:
        """A new run: clear every chart and sample memory until ``end``;
        a language model's quality is perplexity, a classifier's accuracy.
        ``what``: the run and where it is timed, named in the step chart's title."""
        title = STEP_TITLE
        self.latency.setTitle(f"{title}: {what}" if what else title, size="9pt")
        self.perplexity.setVisible(not classifier)
        self.accuracy.setVisible(classifier)
        for chart in (self.latency, self.throughput, self.memory, self.perplexity, self.accuracy):
            chart.clear_points()
        self._tokens = 0
        self._recent.clear()
        self._device = device
        self._started = time.monotonic()
        self._sample_memory()
        self._sampler.start()

    def end(self) -> None:
        self._sampler.stop()

    def clear(self) -> None:
        """Another model is loaded: the last model's run goes (its title
        named the run, not the model, so it read as this one's)."""
        self.latency.setTitle(STEP_TITLE, size="9pt")
        for chart in (self.latency, self.throughput, self.memory, self.perplexity, self.accuracy):
            chart.clear_points()

    def add_step(self, index: int, step_s: float) -> None:
        """A TokenStep: index 0 starts a benchmark run and includes its prefill."""
        self.latency.add_point(self._tokens, step_s * 1e3)
        if index == 0:
            self._recent.clear()
        elif step_s > 0:
            self._recent.append(step_s)
            self.throughput.add_point(self._tokens, len(self._recent) / sum(self._recent))
        self._tokens += 1

    def add_classification(self, ms: float) -> None:
        """A classifier benchmark run: one batch-1 forward pass."""
        self.latency.add_point(self._tokens, ms)
        if ms > 0:
            self.throughput.add_point(self._tokens, 1e3 / ms)
        self._tokens += 1

    def add_accuracy(self, done: int, accuracy: float) -> None:
        self.accuracy.add_point(done, accuracy)

    def add_perplexity(
        self, windows: int, ppl: float, low: float | None, high: float | None
    ) -> None:
        self.perplexity.add_point(windows, ppl, low, high)

    def _sample_memory(self) -> None:
        self.memory.add_point(time.monotonic() - self._started, current_memory_bytes(self._device))
