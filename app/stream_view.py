"""Streamed text with its live speed: one generation's output pane."""

from __future__ import annotations

from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from core.runtime.generation import GenerationSummary, TextToken


class StreamView(QWidget):
    def __init__(self, name: str = "generated_text", parent=None) -> None:
        super().__init__(parent)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setObjectName(name)
        self.speed = QLabel("tokens/s: –")
        self.speed.setObjectName(f"{name}_speed")
        self.speed.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.speed)
        self.summary: GenerationSummary | None = None
        self._waiting = False  # begun by a job that has not ended
        self.clear()  # no job yet: nothing is awaited

    def clear(self) -> None:
        """Another model is loaded: the last model's answer goes."""
        self.begin()
        self._waiting = False
        self.speed.setText("tokens/s: –")

    def begin(self) -> None:
        self.output.clear()
        self.summary = None
        self._tokens, self._first_ms, self._decode_s = 0, 0.0, 0.0
        self._waiting = True
        self.speed.setText("tokens/s: waiting for the first token…")

    def end(self, outcome: str | None) -> None:
        """The job ended. A view it left without a summary says how (it kept
        "waiting for the first token" after a failure): ``outcome`` is the
        window's "<job> failed" or "<job>: cancelled"."""
        if self._waiting and self.summary is None and outcome:
            n = self._tokens
            done = f"after {n} token{'s' * (n != 1)}" if n else "before the first token"
            self.speed.setText(f"{outcome} {done}; no speed is shown for a cut-off run")
        self._waiting = False

    def on_event(self, event) -> None:
        if isinstance(event, TextToken):
            self._on_token(event)
        elif isinstance(event, GenerationSummary):
            self.summary = event
            if event.tail:  # bytes that never made a character, streamed by no token
                self._append(event.tail)
            tps = f"{event.tokens_per_s:.1f}" if event.tokens_per_s else "n/a"
            decode = (
                f"{event.decode_ms_per_token:.1f} ms/token" if event.decode_ms_per_token else "n/a"
            )
            drafts = ""
            if event.lookup:  # prompt lookup: how much of the drafting the model kept
                counts = event.lookup
                drafts = (
                    f"  ·  prompt lookup: {counts['accepted']} of {counts['drafted']} draft "
                    f"tokens kept, {counts['steps']} steps after the first"
                )
                if counts.get("note"):
                    drafts += f" ({counts['note']})"
            self.speed.setText(
                f"tokens/s: {tps}  ·  decode {decode}  ·  first token "
                f"{event.prefill_ms:.0f} ms  ·  {event.new_tokens} tokens  ·  "
                f"stopped: {event.stop_reason}{drafts}  ·  one run, {event.measured_on}"
            )

    def _append(self, text: str) -> None:
        cursor = self.output.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.output.setTextCursor(cursor)

    def _on_token(self, token: TextToken) -> None:
        self._append(token.text)
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
