"""Type a prompt, watch the text stream in with a live tokens/s figure."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGroupBox, QVBoxLayout

from app.latency_chart import LatencyChart
from app.prompt_controls import PromptControls
from app.stream_view import StreamView
from core.runtime.generation import TextToken


class GeneratePanel(QGroupBox):
    generate_requested = Signal(str, int, object, bool)  # prompt, max tokens, Sampling, chat

    def __init__(self, parent=None) -> None:
        super().__init__("Generate", parent)
        self.controls = PromptControls("Generate")
        self.generate_button = self.controls.button
        self.view = StreamView("generated_text")
        self.output, self.speed = self.view.output, self.view.speed
        self.chart = LatencyChart()
        self.chart.setMinimumHeight(180)

        layout = QVBoxLayout(self)
        layout.addWidget(self.controls)
        layout.addWidget(self.view, 2)
        layout.addWidget(self.chart, 1)
        self.generate_button.clicked.connect(
            lambda: self.generate_requested.emit(*self.controls.request())
        )

    def set_ready(self, ready: bool) -> None:
        self.generate_button.setEnabled(ready)

    def begin(self) -> None:
        self.view.begin()
        self.chart.clear_points()

    def on_event(self, event) -> None:
        self.view.on_event(event)
        if isinstance(event, TextToken):
            self.chart.add_point(event.index, event.step_s * 1e3)
