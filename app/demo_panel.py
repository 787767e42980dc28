"""The stakeholder demo: the original and the compressed model answer the
same prompt, streaming side by side, each with its own tokens/s."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.model_gate import ModelGate
from app.prompt_controls import PromptControls
from app.stream_view import StreamView
from core.measure.compare import FASTER, SLOWER, WITHIN_NOISE, speed_verdict, steps_range
from core.runtime.generation import GenerationSummary, TextToken
from core.runtime.side_by_side import COMPRESSED, ORIGINAL, PaneEvent


class DemoPanel(QWidget):
    demo_requested = Signal(str, int, object, bool)  # prompt, max tokens, Sampling, chat

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.controls = PromptControls("Run side by side")
        self.controls.max_tokens.setValue(48)
        self.run_button = self.controls.button
        self.recipe_label = QLabel("Compressed: the recipe set in the compression panel")
        self.recipe_label.setWordWrap(True)
        self.gate = ModelGate(self.run_button, self.recipe_label)
        self.verdict = QLabel("")
        self.verdict.setObjectName("demo_verdict")
        self.verdict.setWordWrap(True)  # one long line widened the window to 2,500 px for good
        self.panes = {
            ORIGINAL: StreamView("original_text"),
            COMPRESSED: StreamView("compressed_text"),
        }
        self._boxes = {}
        self._step_ms: dict[str, list[float]] = {}
        row = QHBoxLayout()
        for pane, title in ((ORIGINAL, "Original"), (COMPRESSED, "Compressed")):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(self.panes[pane])
            self._boxes[pane] = box
            row.addWidget(box)

        layout = QVBoxLayout(self)
        layout.addWidget(self.controls)
        layout.addWidget(self.recipe_label)
        layout.addLayout(row, 1)
        layout.addWidget(self.verdict)
        self.run_button.clicked.connect(lambda: self.demo_requested.emit(*self.controls.request()))

    def set_ready(self, ready: bool) -> None:
        self.gate.set_ready(ready)

    def clear(self) -> None:
        """Another model is loaded: the last pair of answers and its verdict go."""
        self._boxes[COMPRESSED].setTitle("Compressed")
        self.recipe_label.setStyleSheet("")  # its text is the model gate's
        self.verdict.setText("")
        for view in self.panes.values():
            view.clear()

    def begin(self, recipe_name: str, quality: str = "") -> None:
        """``quality``: what the configuration's latest run measured, in words."""
        self._boxes[COMPRESSED].setTitle(f"Compressed: {recipe_name}")
        self.recipe_label.setText(
            "Both answer in turns, one token each, so neither slows the other down; "
            "each token is timed on its own." + (f"\n{quality}" if quality else "")
        )
        broken = quality.startswith("Measured BROKEN")
        self.recipe_label.setStyleSheet("color: #b00020;" if broken else "")
        self.verdict.setText("")
        self._step_ms = {pane: [] for pane in self.panes}  # decode steps, for their spread
        for view in self.panes.values():
            view.begin()

    def on_event(self, event: PaneEvent) -> None:
        self.panes[event.pane].on_event(event.event)
        if isinstance(event.event, TextToken) and event.event.index > 0:
            self._step_ms.setdefault(event.pane, []).append(event.event.step_s * 1e3)
        if isinstance(event.event, GenerationSummary):
            self._show_verdict()

    def _show_verdict(self) -> None:
        a, b = self.panes[ORIGINAL].summary, self.panes[COMPRESSED].summary
        if a is None or b is None or not a.tokens_per_s or not b.tokens_per_s:
            return
        same = _texts_compared(a, b)
        # The same steps of both: a longer answer's later tokens attend over
        # more context, so its mean would be slower by length alone.
        shared = min(len(self._step_ms.get(ORIGINAL, [])), len(self._step_ms.get(COMPRESSED, [])))
        ms_a, ms_b = (self._step_ms.get(p, [])[:shared] for p in (ORIGINAL, COMPRESSED))
        if not shared:
            return
        verdict = speed_verdict(steps_range(ms_a), steps_range(ms_b))
        why = {
            FASTER: "faster: the per-token p10-p90 ranges are apart",
            SLOWER: "slower: the per-token p10-p90 ranges are apart",
            WITHIN_NOISE: "within noise: the per-token p10-p90 ranges overlap",
        }.get(verdict, "too few tokens to tell faster from noise")
        tps_a, tps_b = (len(ms) * 1e3 / sum(ms) for ms in (ms_a, ms_b))
        self.verdict.setText(
            f"Compressed decodes at {tps_b / tps_a:.2f}x the original's tokens/s "
            f"({tps_b:.1f} vs {tps_a:.1f} over the first {shared} tokens after the prompt of "
            f"each), {why}; they wrote {same}.\nOne generation each, compressed on "
            f"{b.measured_on}, original on {a.measured_on}; machine load not monitored."
        )


def _texts_compared(a, b) -> str:
    """What the two answers' texts say; a cancelled one is cut short, so only
    the part both wrote can be compared."""
    if "cancelled" not in (a.stop_reason, b.stop_reason):
        return "the same text" if a.text == b.text else "different text"
    shared = min(len(a.text), len(b.text))
    agree = a.text[:shared] == b.text[:shared]
    return (
        "the same text as far as both got before Cancel"
        if agree
        else "different text before Cancel"
    )
