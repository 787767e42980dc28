"""A prompt with its generation settings: shared by Generate and the demo."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.runtime.sampling import Sampling

DEFAULT_PROMPT = "Explain in two sentences why smaller language models are faster."


class PromptControls(QWidget):
    def __init__(self, button_text: str, parent=None) -> None:
        super().__init__(parent)
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
        self.button = QPushButton(button_text)

        row = QHBoxLayout()
        for widget in (self.max_tokens, self.temperature, self.chat):
            row.addWidget(widget)
        row.addStretch(1)
        row.addWidget(self.button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Prompt"))
        layout.addWidget(self.prompt)
        layout.addLayout(row)

    def sampling(self) -> Sampling:
        temperature = self.temperature.value()
        return Sampling(temperature=temperature, top_p=0.95 if temperature else 1.0)

    def request(self) -> tuple[str, int, Sampling, bool]:
        """prompt, max new tokens, sampling, chat template"""
        return (
            self.prompt.toPlainText(),
            self.max_tokens.value(),
            self.sampling(),
            self.chat.isChecked(),
        )
