"""The Live run tab: per-token latency, throughput and memory while a
configuration is benchmarked, and perplexity converging while it is
evaluated. Fed with the run job's events; memory is sampled on a timer."""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QSplitter

from app.latency_chart import TITLE, LatencyChart
from app.perplexity_chart import PerplexityChart
from app.series_chart import SeriesChart
from app.sizes import MB, UNIT
from core.measure.memory import current_memory_bytes

MEMORY_SAMPLE_MS = 250
THROUGHPUT_WINDOW = 8  # decode steps averaged for the throughput curve


# Chart titles stay short (longer ones were cut off below 1,920 px); the run
# and how it is timed go in the heading above the charts, which wraps.
WAITING = "Press Run: the charts fill in as the configuration is benchmarked and evaluated."
HOW_TIMED = (
    "every timed run's steps, warm-ups included; the first step of each includes the prefill"
)


class LiveRunView(QSplitter):
    def __init__(self, parent=None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.heading = QLabel(WAITING)
        self.heading.setObjectName("live_heading")
        self.heading.setWordWrap(True)
        self.heading.setMaximumHeight(self.heading.fontMetrics().lineSpacing() * 3 + 8)
        self.latency = LatencyChart()
        self.throughput = SeriesChart("Decode throughput", "token", "tokens/s", color="#ff7f0e")
        self.throughput.setToolTip(f"tokens/s over the last {THROUGHPUT_WINDOW} decode steps")
        self.memory = SeriesChart("Memory", "seconds", "memory", UNIT, color="#9467bd")
        self.memory.setToolTip("process RSS, or CUDA memory allocated on a GPU")
        self.memory.getAxis("left").setScale(1 / MB)  # bytes drawn, MB written
        self.memory.empty_y_range = (0.0, float(MB))
        self.perplexity = PerplexityChart()
        self.accuracy = SeriesChart(
            "Accuracy while evaluating", "reviews scored", "accuracy", color="#2ca02c"
        )
        self.accuracy.setToolTip("the classifier's accuracy on the test reviews scored so far")
        self.accuracy.setVisible(False)  # a language model's quality is perplexity
        self.top_row = QSplitter(Qt.Orientation.Horizontal)
        self.top_row.addWidget(self.latency)
        self.top_row.addWidget(self.throughput)
        self.bottom_row = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_row.addWidget(self.perplexity)
        self.bottom_row.addWidget(self.accuracy)
        self.bottom_row.addWidget(self.memory)
        self.addWidget(self.heading)
        self.addWidget(self.top_row)
        self.addWidget(self.bottom_row)
        self.setCollapsible(0, False)
        self.setStretchFactor(1, 1)
        self.setStretchFactor(2, 1)
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
        unit = "forward pass" if classifier else "token"
        self.latency.setTitle(f"Step time per {unit}", size="9pt")
        self.throughput.setTitle(
            "Examples per second" if classifier else "Decode throughput", size="9pt"
        )
        self.heading.setText(f"Benchmark of {what}: {HOW_TIMED}." if what else HOW_TIMED + ".")
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
        self.latency.setTitle(TITLE, size="9pt")
        self.heading.setText(WAITING)
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
