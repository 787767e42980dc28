"""The menu bar and keyboard shortcuts. Every action that stands for a button
(Run, Cancel, Export, Open) is enabled exactly when that button is, so the
busy state has one owner and a shortcut can never start what the button
would refuse."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

ABOUT_LINE = (
    "Load a language model, compress it, measure what it costs in speed and quality, "
    "and export exactly what was measured."
)


class EnabledMirror(QObject):
    """Keeps ``action`` enabled exactly when ``widget`` is."""

    def __init__(self, action: QAction, widget: QWidget) -> None:
        super().__init__(action)
        self.action, self.widget = action, widget
        widget.installEventFilter(self)
        action.setEnabled(widget.isEnabled())

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.EnabledChange:
            self.action.setEnabled(self.widget.isEnabled())
        return False


def add_action(
    menu,
    text: str,
    slot: Callable[[], None],
    shortcuts: tuple[str, ...] = (),
    follows: QWidget | None = None,
) -> QAction:
    """A menu entry calling ``slot``, with ``shortcuts``; enabled as ``follows`` is."""
    action = QAction(text, menu)
    action.setShortcuts([QKeySequence(s) for s in shortcuts])
    action.triggered.connect(lambda _checked=False: slot())
    if follows is not None:
        EnabledMirror(action, follows)
    menu.addAction(action)
    return action


def shortcut_rows(actions) -> list[tuple[str, str]]:
    """(what, keys) for every action with a shortcut, keys as the platform writes them."""
    rows = []
    for action in actions:
        keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts()]
        if keys:
            rows.append((action.text().replace("&", "").rstrip("…"), " or ".join(keys)))
    return rows


class ShortcutsDialog(QDialog):
    """The keyboard shortcuts, read from the actions themselves so the list
    cannot drift from what the keys do."""

    def __init__(self, actions, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(actions)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.table.verticalHeader().setVisible(False)
        for row, (what, keys) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(what))
            self.table.setItem(row, 1, QTableWidgetItem(keys))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(380, 80 + 30 * len(rows))


def about_box(parent) -> QMessageBox:
    from core import __version__

    box = QMessageBox(parent)
    box.setWindowTitle("About Compression Workbench")
    box.setIcon(QMessageBox.Icon.Information)
    box.setText(f"<b>Compression Workbench {__version__}</b>")
    box.setInformativeText(ABOUT_LINE)
    return box
