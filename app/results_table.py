"""Every run in a table; selecting a row restores its recipe."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QStyle,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
)

from app.run_status import BROKEN_COLOR, BROKEN_TINT, BUSY_COLOR, status_detail, status_text
from app.sizes import UNIT, mb_number
from core.evaluate.protocol_text import text_of
from core.results.store import RunRecord

COLUMNS = [
    ("Recipe", lambda r: r.recipe_name),
    ("Status", lambda r: status_text(r)),
    (f"Size {UNIT}", lambda r: mb_number(r.bytes)),
    ("Prefill ms", lambda r: _num(r.metric("prefill_ms"), ".1f")),
    ("Decode ms/tok", lambda r: _num(r.metric("decode_ms_per_token"), ".2f")),
    ("Tokens/s", lambda r: _num(r.metric("tokens_per_s"), ".1f")),
    ("Perplexity", lambda r: _ppl(r)),
    ("Eval text", lambda r: text_of(r.eval_protocol) or "–"),
    ("Top-1 agree", lambda r: _agreement(r)),
    ("Accuracy", lambda r: _num(r.metric("accuracy"), ".1%")),
    ("Latency ms", lambda r: _num(r.metric("latency_ms"), ".1f")),
    ("Device", lambda r: f"{r.device} · {r.threads} thr · {r.backend}"),
    ("Model", lambda r: r.model),
]


STATUS_COLUMN = [name for name, _ in COLUMNS].index("Status")


RECIPE_WIDTH = 280  # px at most for the recipe column


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _agreement(r: RunRecord) -> str:
    """The original's agreement with itself is defined, not measured."""
    value = r.metric("top1_agreement")
    return "itself" if r.is_original and value is not None else _num(value, ".3f")


def _ppl(r: RunRecord) -> str:
    """Perplexity with its 95% interval as computed (asymmetric); a record
    from before the interval was stored shows its half width."""
    ppl, low, high = r.metric("ppl"), r.metric("ppl_ci95_low"), r.metric("ppl_ci95_high")
    if ppl is None:
        return "–"
    if low is not None and high is not None:
        return f"{_big(ppl)} ({_big(low)}–{_big(high)})"
    half = r.metric("ppl_ci95")
    return f"{_big(ppl)} ± {_big(half)}" if half else _big(ppl)


def _big(value: float) -> str:
    """Two decimals, or three significant digits for a collapsed run's
    perplexity ("19630797.04 (337787.79–1140858864.99)" filled the column)."""
    return f"{value:.2f}" if abs(value) < 1e5 else f"{value:.3g}"


class MarkerDelegate(QStyledItemDelegate):
    """Draws a marked status cell in its own colours even in a selected row:
    the selection colour would otherwise hide "broken" on the very row a
    user picks to compare or export."""

    def initStyleOption(self, option, index) -> None:  # noqa: N802 (Qt's name)
        super().initStyleOption(option, index)
        if index.data(Qt.ItemDataRole.BackgroundRole) is not None:
            option.state &= ~QStyle.StateFlag.State_Selected


class ResultsTable(QTableWidget):
    record_selected = Signal(object)  # RunRecord
    pair_selected = Signal(object, object)  # two RunRecords, in table order

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.records: list[RunRecord] = []
        self.setHorizontalHeaderLabels([name for name, _ in COLUMNS])
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setStretchLastSection(True)
        self.setItemDelegateForColumn(STATUS_COLUMN, MarkerDelegate(self))
        self.itemSelectionChanged.connect(self._on_selection)

    def add(self, record: RunRecord) -> None:
        self.add_many([record])

    def add_many(self, records: list[RunRecord]) -> None:
        """Rows for ``records``; columns fitted once, after them all."""
        self.setUpdatesEnabled(False)
        try:
            for record in records:
                self._add_row(record)
        finally:
            self.setUpdatesEnabled(True)
        self.resizeColumnToContents(0)
        # a search's long recipe names pushed every number off screen: the
        # name is elided past this width, whole in its tooltip
        self.setColumnWidth(0, min(self.columnWidth(0), RECIPE_WIDTH))
        self.resizeColumnToContents(STATUS_COLUMN)

    def _add_row(self, record: RunRecord) -> None:
        self.records.append(record)
        row = self.rowCount()
        self.insertRow(row)
        status = status_detail(record)
        lines = [record.recipe_name, status, f"speed: {record.bench_protocol}"]
        lines += [f"quality: {record.eval_protocol}", *record.notes]
        tooltip = "\n".join(line for line in lines if line)
        for column, (_, value) in enumerate(COLUMNS):
            item = QTableWidgetItem(value(record))
            item.setToolTip(tooltip)
            if record.broken:
                item.setBackground(QBrush(QColor(BROKEN_TINT)))
            self.setItem(row, column, item)
        self._mark_status(self.item(row, STATUS_COLUMN), record, status)

    def _mark_status(self, item: QTableWidgetItem, record: RunRecord, status: str) -> None:
        """A red "broken" or amber "busy machine" cell, saying why on hover."""
        if not (record.broken or record.machine_busy):
            return
        item.setBackground(QBrush(QColor(BROKEN_COLOR if record.broken else BUSY_COLOR)))
        item.setForeground(QBrush(QColor("white" if record.broken else "black")))
        item.setToolTip(status)

    def selected_records(self) -> list[RunRecord]:
        return [self.records[row] for row in sorted({i.row() for i in self.selectedIndexes()})]

    def select_record(self, record: RunRecord) -> None:
        self.selectRow(self.records.index(record))

    def _on_selection(self) -> None:
        rows = {index.row() for index in self.selectedIndexes()}
        if len(rows) == 1:
            self.record_selected.emit(self.records[rows.pop()])
        elif len(rows) == 2:
            a, b = sorted(rows)
            self.pair_selected.emit(self.records[a], self.records[b])
