"""Type a prompt, watch the text stream in with a live tokens/s figure."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from app.latency_chart import LatencyChart
from core.generation import GenerationSummary, TextToken
from core.runtime.sampling import Sampling

DEFAULT_PROMPT = "Explain in two sentences why smaller language models are faster."


class GeneratePanel(QGroupBox):
    generate_requested = Signal(str, int, object, bool)  # prompt, max tokens, Sampling, chat

    def __init__(self, parent=None) -> None:
        super().__init__("Generate", parent)
        self.prompt = QPlainTextEdit(DEFAULT_PROMPT)
        self.prompt.setMaximumHeight(80)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 4096)
        self.max_tokens.setValue(64)
        self.max_tokens.setPrefix("max tokens ")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setPrefix("temperature ")
        self.temperature.setToolTip("0 = greedy decoding")
        self.chat = QCheckBox("chat template")
        self.chat.setChecked(True)
        self.chat.setToolTip("Wrap the prompt in the model's chat template (instruct models)")
        self.generate_button = QPushButton("Generate")
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setObjectName("generated_text")
        self.speed = QLabel("tokens/s: –")
        self.speed.setObjectName("tokens_per_s")
        self.chart = LatencyChart()
        self.chart.setMinimumHeight(180)

        controls = QHBoxLayout()
        for widget in (self.max_tokens, self.temperature, self.chat):
            controls.addWidget(widget)
        controls.addStretch(1)
        controls.addWidget(self.generate_button)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Prompt"))
        layout.addWidget(self.prompt)
        layout.addLayout(controls)
        layout.addWidget(self.output, 2)
        layout.addWidget(self.speed)
        layout.addWidget(self.chart, 1)

        self.generate_button.clicked.connect(self._request)
        self._tokens = 0
        self._first_ms = 0.0
        self._decode_s = 0.0

    def set_ready(self, ready: bool) -> None:
        self.generate_button.setEnabled(ready)

    def begin(self) -> None:
        self.output.clear()
        self.chart.clear_points()
        self._tokens, self._first_ms, self._decode_s = 0, 0.0, 0.0
        self.speed.setText("tokens/s: waiting for the first token…")

    def on_event(self, event) -> None:
        if isinstance(event, TextToken):
            self._on_token(event)
        elif isinstance(event, GenerationSummary):
            tps = f"{event.tokens_per_s:.1f}" if event.tokens_per_s else "n/a"
            self.speed.setText(
                f"tokens/s: {tps}  ·  first token {event.prefill_ms:.0f} ms  ·  "
                f"{event.new_tokens} tokens  ·  stopped: {event.stop_reason}"
            )

    def _on_token(self, token: TextToken) -> None:
        cursor = self.output.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(token.text)
        self.output.setTextCursor(cursor)
        self.chart.add_point(token.index, token.step_s * 1e3)
        self._tokens += 1
        if token.index == 0:
            self._first_ms = token.step_s * 1e3
            self.speed.setText(f"first token {self._first_ms:.0f} ms")
            return
        self._decode_s += token.step_s
        self.speed.setText(
            f"tokens/s: {(self._tokens - 1) / self._decode_s:.1f} (live)  ·  "
            f"first token {self._first_ms:.0f} ms  ·  {self._tokens} tokens"
        )

    def _request(self) -> None:
        temperature = self.temperature.value()
        sampling = Sampling(temperature=temperature, top_p=0.95 if temperature else 1.0)
        self.generate_requested.emit(
            self.prompt.toPlainText(), self.max_tokens.value(), sampling, self.chat.isChecked()
        )
