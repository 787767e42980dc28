"""Type a prompt, watch the text stream in with a live tokens/s figure.

Beam search cannot stream its answer (a leading beam may still lose), so
while it runs the pane shows the beam leading at each step, marked as such,
and the chart each step's time; the answer replaces it at the end."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGroupBox, QVBoxLayout

from app.latency_chart import LatencyChart
from app.model_gate import ModelGate
from app.prompt_controls import PromptControls
from app.stream_view import StreamView
from core.runtime.beam_generation import BeamProgress
from core.runtime.generation import GenerationSummary, TextToken

LEADING = "[leading beam, may still change]\n"


class GeneratePanel(QGroupBox):
    # prompt, max tokens, Sampling, chat, BeamSearch or None, PromptLookup or None
    generate_requested = Signal(str, int, object, bool, object, object)

    def __init__(self, parent=None) -> None:
        super().__init__("Generate", parent)
        self.controls = PromptControls("Generate", beams=True)
        self.generate_button = self.controls.button
        self.view = StreamView("generated_text")
        self.gate = ModelGate(self.generate_button, self.view.speed)
        self.output, self.speed = self.view.output, self.view.speed
        self.chart = LatencyChart()
        self.chart.setMinimumHeight(180)

        layout = QVBoxLayout(self)
        layout.addWidget(self.controls)
        layout.addWidget(self.view, 2)
        layout.addWidget(self.chart, 1)
        self.generate_button.clicked.connect(
            lambda: self.generate_requested.emit(
                *self.controls.request(),
                self.controls.beam_search(),
                self.controls.prompt_lookup(),
            )
        )

    def set_ready(self, ready: bool) -> None:
        self.gate.set_ready(ready)

    def begin(self) -> None:
        self.view.begin()
        self.chart.clear_points()

    def clear(self) -> None:
        """Another model is loaded: the last model's text and step times go."""
        self.view.clear()
        self.chart.clear_points()

    def on_event(self, event) -> None:
        if isinstance(event, BeamProgress):
            self._on_beam_step(event)
            return
        self.view.on_event(event)
        if isinstance(event, TextToken):
            self.chart.add_point(event.index, event.step_s * 1e3)
        elif isinstance(event, GenerationSummary) and event.num_beams > 1:
            self._on_beam_summary(event)

    def _on_beam_step(self, step: BeamProgress) -> None:
        self.output.setPlainText(LEADING + step.leading_text)
        self.chart.add_point(step.index, step.step_s * 1e3)
        self.speed.setText(
            f"beam search: step {step.index + 1}, {step.step_s * 1e3:.0f} ms  ·  "
            f"{step.finished} finished"
        )

    def _on_beam_summary(self, summary: GenerationSummary) -> None:
        self.output.setPlainText(summary.text)
        step = (
            f"then {summary.decode_ms_per_token:.1f} ms/step"
            if summary.decode_ms_per_token
            else "no later step"
        )
        self.speed.setText(
            f"beam search, {summary.num_beams} beams: {summary.search_steps} steps, first "
            f"(prompt) {summary.prefill_ms:.0f} ms, {step}  ·  {summary.new_tokens} tokens "
            f"chosen  ·  stopped: {summary.stop_reason}  ·  one run, {summary.measured_on}"
        )
