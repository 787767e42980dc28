"""A panel's start button for the loaded model: enabled only when the
worker is idle and the model is one the panel's job takes. A model it
refuses (an ONNX graph, for work that rewrites PyTorch modules) greys the
button and puts the job's own refusal line where the panel speaks."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractButton, QLabel

NO_MODEL = "Load a model first."


class ModelGate:
    def __init__(self, button: QAbstractButton, label: QLabel) -> None:
        self.button, self.label = button, label
        self.default_text = label.text()
        self.reason: str | None = None
        self.loaded = False  # before any model: greyed, and saying why
        label.setText(NO_MODEL)
        button.setToolTip(NO_MODEL)

    def refuse(self, reason: str | None) -> None:
        """The loaded model's refusal (None: it is taken)."""
        self.loaded = True
        self.reason = reason
        self.label.setText(reason or self.default_text)
        self.button.setToolTip(reason or "")
        if reason:
            self.button.setEnabled(False)

    def set_ready(self, ready: bool) -> None:
        self.button.setEnabled(ready and self.reason is None)
