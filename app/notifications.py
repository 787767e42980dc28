"""The notification area: every error and notice, newest first, kept."""

from __future__ import annotations

import time

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem


class NotificationArea(QListWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("notifications")
        self.setMaximumHeight(90)
        self.setWordWrap(True)
        self.setToolTip("Errors and notices from the workbench, newest first")

    def error(self, message: str) -> None:
        self._add(f"Error: {message}", QColor("#b00020"))

    def notice(self, message: str) -> None:
        self._add(message, None)

    def messages(self) -> list[str]:
        return [self.item(i).text().split("  ", 1)[1] for i in range(self.count())]

    def _add(self, text: str, color: QColor | None) -> None:
        item = QListWidgetItem(f"{time.strftime('%H:%M:%S')}  {text}")
        if color is not None:
            item.setForeground(color)
        self.insertItem(0, item)
