"""A layers x components heatmap: one coloured cell per measured value, a
colour bar, the cell's numbers on hover and a signal when a cell is
clicked. Cells not measured yet are left transparent (NaN), so the map
visibly fills as values arrive."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QLabel, QToolTip, QVBoxLayout, QWidget

from app.chart_axes import readable_axes


class _CellImage(pg.ImageItem):
    """The image, reporting which cell the pointer is over or clicked."""

    def __init__(self, owner: Heatmap) -> None:
        super().__init__()
        self.owner = owner
        self.setAcceptHoverEvents(True)

    def hoverEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph's name)
        if ev.isExit():
            self.owner.hovered = None
            return
        self.owner.hover_at(ev.pos())

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph's name)
        if ev.button() == Qt.MouseButton.LeftButton:
            cell = self.owner.cell_at(ev.pos())
            if cell is not None:
                ev.accept()
                self.owner.cell_clicked.emit(*cell)


class Heatmap(QWidget):
    cell_clicked = Signal(int, int)  # row, column

    def __init__(self, title: str, parent=None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(background="w", axisItems=readable_axes(), title=title)
        self.plot.invertY(True)  # row 0 at the top
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.image = _CellImage(self)
        self.plot.addItem(self.image)
        self.color_map = pg.colormap.get("viridis")
        self.image.setColorMap(self.color_map)
        self.bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=self.color_map, interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        self.values = np.full((1, 1), np.nan)  # [column, row]
        self.columns: list[str] = []
        self.tips: dict[tuple[int, int], str] = {}
        self.hovered: tuple[int, int] | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        # Beside the bar the name was cut off past the widget's edge; here it wraps.
        self.scale = QLabel("")
        self.scale.setWordWrap(True)
        layout.addWidget(self.scale)

    def set_grid(self, rows: list[str], columns: list[str], row_label: str, column_label: str):
        """An empty grid: every cell transparent until a value arrives."""
        self.values = np.full((len(columns), len(rows)), np.nan)
        self.columns = list(columns)  # the labels drawn under the grid
        self.tips = {}
        step = max(1, math.ceil(len(rows) / 16))  # at most ~16 row labels
        left, bottom = self.plot.getAxis("left"), self.plot.getAxis("bottom")
        left.setTicks([[(i + 0.5, rows[i]) for i in range(0, len(rows), step)]])
        bottom.setTicks([[(i + 0.5, name) for i, name in enumerate(columns)]])
        self.plot.setLabel("left", row_label)
        self.plot.setLabel("bottom", column_label)
        self.plot.setRange(xRange=(0, len(columns)), yRange=(0, len(rows)), padding=0.02)
        self._draw()

    def set_scale(self, label: str) -> None:
        """What the colours stand for, written along the colour bar (colour
        alone carried the meaning)."""
        self.scale.setText(f"Colour: {label}, from the lowest (dark) to the highest (yellow)")

    def set_cell(self, row: int, column: int, value: float, tip: str) -> None:
        self.values[column, row] = value
        self.tips[(row, column)] = tip
        self._draw()

    def measured(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.values)))

    def cell_at(self, pos: QPointF) -> tuple[int, int] | None:
        """(row, column) under ``pos`` (image coordinates), None outside the grid."""
        column, row = math.floor(pos.x()), math.floor(pos.y())
        columns, rows = self.values.shape
        return (row, column) if 0 <= column < columns and 0 <= row < rows else None

    def hover_at(self, pos: QPointF) -> str:
        cell = self.cell_at(pos)
        self.hovered = cell
        text = self.tips.get(cell, "not measured yet") if cell is not None else ""
        if text:
            QToolTip.showText(QCursor.pos(), text, self.plot)
        return text

    def _draw(self) -> None:
        known = self.values[~np.isnan(self.values)]
        low = float(min(known.min(), 0.0)) if known.size else 0.0
        high = float(known.max()) if known.size else 1.0
        if high <= low:
            high = low + 1e-9
        self.image.setImage(self.values, autoLevels=False, levels=(low, high))
        self.bar.setLevels((low, high))
