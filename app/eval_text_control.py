"""The "Evaluation text" control: which text a run's perplexity is scored on.
Bundled news (the default) or Python help, whose report split is scored, or
a UTF-8 / JSONL file of the user's, scored whole. A file is checked when it
is chosen (``core.data.own_text``); a bad one is refused with the reason."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.data.own_text import read_text_file

CHOOSE_FILE = "choose-file"
BUNDLED = [("News articles (bundled)", None), ("Python help (bundled)", "pydoc")]


class EvaluationTextControl(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        for label, key in BUNDLED:
            self.combo.addItem(label, key)
        self.combo.addItem("Text file…", CHOOSE_FILE)
        self.combo.setToolTip(
            "The text perplexity and fidelity are scored on. Bundled texts: their report "
            "split. A file (UTF-8 text, or JSONL with a 'text' field per line) is scored "
            "whole; calibration then reads the bundled news calibration split."
        )
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020;")
        self.problem.hide()
        self._chosen = 0
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Evaluation text"))
        row.addWidget(self.combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.problem)
        self.combo.activated.connect(self._activated)

    def text_source(self) -> str | None:
        """None (bundled news), "pydoc", or the chosen file's path."""
        return self.combo.itemData(self._chosen)

    def apply(self, settings):
        """``settings`` (ExperimentSettings) with this text, unchanged for the default."""
        source = self.text_source()
        return settings if source is None else replace(settings, text_source=source)

    def set_file(self, path: str) -> bool:
        """Choose ``path`` if it can be evaluated on; else say why and keep the last choice."""
        try:
            text = read_text_file(path)
        except ValueError as err:
            self._show_problem(str(err))
            return False
        index = self.combo.findData(text.path)
        if index < 0:
            index = self.combo.count() - 1  # files sit just before "Text file…"
            self.combo.insertItem(index, Path(text.path).name, text.path)
            self.combo.setItemData(index, text.path, Qt.ItemDataRole.ToolTipRole)
        self._select(index)
        self._show_problem("")
        return True

    def _activated(self, index: int) -> None:
        if self.combo.itemData(index) != CHOOSE_FILE:
            self._select(index)
            return
        self.combo.setCurrentIndex(self._chosen)  # until a file is chosen
        path, _ = QFileDialog.getOpenFileName(
            self, "Evaluation text", "", "Text (*.txt *.md *.jsonl *.ndjson);;All files (*)"
        )
        if path:
            self.set_file(path)

    def _select(self, index: int) -> None:
        self._chosen = index
        self.combo.setCurrentIndex(index)

    def _show_problem(self, message: str) -> None:
        self.problem.setText(message)
        self.problem.setVisible(bool(message))
