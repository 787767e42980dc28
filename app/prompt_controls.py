"""A prompt with its generation settings: shared by Generate and the demo."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.runtime.beam_search import BeamSearch
from core.runtime.prompt_lookup import MAX_DRAFT_TOKENS, PromptLookup
from core.runtime.sampling import Sampling

DEFAULT_PROMPT = "Explain in two sentences why smaller language models are faster."


class PromptControls(QWidget):
    """``beams``: show beam search settings (Generate has them; the
    side-by-side demo streams tokens, which beam search cannot)."""

    def __init__(self, button_text: str, parent=None, beams: bool = False) -> None:
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
        self.beams = self._beam_controls() if beams else None
        self.lookup = self._lookup_control() if beams else None

        # Sampling on one row, search settings on a second: one row of all of
        # them made the window at least 1575 px wide (wider than a laptop's).
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
        if self.beams is not None:
            search = QHBoxLayout()
            for widget in (self.beams, self.length_penalty, self.early_stopping, self.lookup):
                search.addWidget(widget)
            search.addStretch(1)
            layout.addLayout(search)

    def _beam_controls(self) -> QSpinBox:
        beams = QSpinBox()
        beams.setRange(1, 16)
        beams.setPrefix("beams ")
        beams.setToolTip(
            "Beam search keeps this many candidate answers and returns the most likely "
            "(1 = off). Deterministic, so temperature is unused; the answer appears when "
            "the search ends, the leading beam meanwhile."
        )
        self.length_penalty = QDoubleSpinBox()
        self.length_penalty.setRange(-10.0, 10.0)
        self.length_penalty.setSingleStep(0.1)
        self.length_penalty.setValue(1.0)
        self.length_penalty.setPrefix("length penalty ")
        self.length_penalty.setToolTip(
            "An answer's log-probability is divided by its length to this power; "
            "> 0 favours longer answers"
        )
        self.early_stopping = QComboBox()
        # The CLI's words (--early-stopping false|true|never), transformers' values.
        for value in (False, True, "never"):
            self.early_stopping.addItem(f"early stopping {str(value).lower()}", value)
        self.early_stopping.setToolTip(
            "When the search ends (transformers' early_stopping): False, when no running "
            "beam is likely to beat the finished ones; True, as soon as there are as many "
            "finished as beams; never, when none can"
        )
        beams.valueChanged.connect(self._on_beams)
        self._on_beams(beams.value())
        return beams

    def _lookup_control(self) -> QSpinBox:
        lookup = QSpinBox()
        lookup.setRange(0, MAX_DRAFT_TOKENS)
        lookup.setPrefix("prompt lookup ")
        lookup.setSpecialValueText("prompt lookup off")
        lookup.setToolTip(
            "Greedy decoding with drafts of up to this many tokens copied from the text so "
            "far, each checked in one model step: the same answer in fewer steps when it "
            "repeats its prompt or itself (0 = off; greedy only, not with beams)"
        )
        lookup.valueChanged.connect(self._on_choice)
        self.beams.valueChanged.connect(self._on_choice)
        return lookup

    def _on_beams(self, count: int) -> None:
        searching = count > 1
        self.temperature.setEnabled(not searching)
        self.length_penalty.setEnabled(searching)
        self.early_stopping.setEnabled(searching)

    def _on_choice(self, _value: int = 0) -> None:
        """Beams and prompt lookup exclude each other, and both are greedy."""
        drafting = bool(self.lookup.value())
        searching = self.beams.value() > 1
        self.beams.setEnabled(not drafting)
        self.lookup.setEnabled(not searching)
        self.temperature.setEnabled(not (drafting or searching))

    def prompt_lookup(self) -> PromptLookup | None:
        if self.lookup is None or not self.lookup.value() or self.beam_search() is not None:
            return None
        return PromptLookup(self.lookup.value())

    def beam_search(self) -> BeamSearch | None:
        if self.beams is None or self.beams.value() == 1:
            return None
        return BeamSearch(
            self.beams.value(), self.length_penalty.value(), self.early_stopping.currentData()
        )

    def sampling(self) -> Sampling:
        if self.beam_search() is not None or self.prompt_lookup() is not None:
            return Sampling()  # deterministic: the temperature box is disabled
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
