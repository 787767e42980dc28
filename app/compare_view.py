"""Two runs side by side: every measured number, and B against A.

Shown when exactly two rows of the results table are selected. Ratios are
only given where both runs measured the number alike (the rule the CLI and
the report follow: core.measure.compare.incomparable); elsewhere the cell
says why not, and the protocols are shown below. A timed
number's ratio says faster or slower only when the two runs' p10-p90
ranges are apart, "within noise" when they overlap
(core.measure.compare.speed_verdict)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from app.run_status import BROKEN_COLOR, BUSY_COLOR, status_detail, status_text
from app.sizes import UNIT, megabytes
from core.measure.compare import TIMED_METRICS, incomparable, ratio_verdict_text, speed_range
from core.results.store import RunRecord

# (row, the record's metric, format): "bytes" is the record's size.
METRICS = [
    (f"Size {UNIT}", "bytes", ".2f"),
    ("Prefill ms", "prefill_ms", ".1f"),
    ("Decode ms/token", "decode_ms_per_token", ".2f"),
    ("Tokens/s", "tokens_per_s", ".1f"),
    ("Latency ms", "latency_ms", ".2f"),
    ("Examples/s", "examples_per_s", ".1f"),
    ("Perplexity", "ppl", ".2f"),
    ("Perplexity 95% low", "ppl_ci95_low", ".2f"),
    ("Perplexity 95% high", "ppl_ci95_high", ".2f"),
    ("Top-1 agreement", "top1_agreement", ".3f"),
    ("Mean KL", "mean_kl", ".4f"),
]
# The original's agreement with itself is defined (1 and 0), not measured.
AGAINST_ITSELF = ("top1_agreement", "mean_kl")
TEXT_ROWS = [
    ("Runtime", lambda r: f"{r.backend or 'torch'} on {r.device}, {r.threads} threads"),
    ("Speed protocol", lambda r: r.bench_protocol),
    ("Quality protocol", lambda r: r.eval_protocol or "not evaluated"),
    ("Model", lambda r: r.model),
]


# The status first: a broken run's numbers are not a trade-off to weigh.
ROW_NAMES = ["Status"] + [m[0] for m in METRICS] + [t[0] for t in TEXT_ROWS]


def _titled(r: RunRecord) -> str:
    return f"{r.recipe_name} (BROKEN)" if r.broken else r.recipe_name


def _value(r: RunRecord, name: str) -> float | None:
    return megabytes(r.bytes) if name == "bytes" else r.metric(name)


def _value_text(r: RunRecord, name: str, value: float | None, fmt: str) -> str:
    if name in AGAINST_ITSELF and r.is_original and value is not None:
        return "the original itself"
    return "–" if value is None else format(value, fmt)


def ratio_text(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == 0:
        return "–"
    return f"{b / a:.3f}x"


class CompareView(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("Select two runs in the table (Ctrl+click) to compare them here.")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # recipe names come from runs.jsonl
        self.table = QTableWidget(len(ROW_NAMES), 3)
        self.table.setVerticalHeaderLabels(ROW_NAMES)
        self.table.setHorizontalHeaderLabels(["A", "B", "B / A"])  # not "1 2 3" while empty
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table, 1)
        self.pair: tuple[RunRecord, RunRecord] | None = None

    def show_pair(self, a: RunRecord, b: RunRecord) -> None:
        self.pair = (a, b)
        self.title.setText(f"A: {_titled(a)}   ·   B: {_titled(b)}")
        self.table.setHorizontalHeaderLabels(["A", "B", "B / A"])
        self._show_status(a, b)
        for row, (_, name, fmt) in enumerate(METRICS, start=1):
            va, vb = _value(a, name), _value(b, name)
            self._set(row, 0, _value_text(a, name, va, fmt))
            self._set(row, 1, _value_text(b, name, vb, fmt))
            if va is None or vb is None:
                self._set(row, 2, "–")
            elif why := incomparable(b, a, name):  # one rule with the CLI and the report
                self._set(row, 2, f"not comparable: {why}")
            elif name in AGAINST_ITSELF and (a.is_original or b.is_original):
                self._set(row, 2, "–")
            elif name not in TIMED_METRICS:
                self._set(row, 2, ratio_text(va, vb))
            else:
                ra, rb = (speed_range(r.metric, name) for r in (a, b))
                for column, spread in ((0, ra), (1, rb)):
                    if spread is not None:  # the p10-p90 range on hover
                        self.table.item(row, column).setToolTip(f"median {spread.text()}")
                ratio = vb / va if va and vb is not None else None
                self._set(row, 2, ratio_verdict_text(ra, rb, ratio))
        for offset, (_, value) in enumerate(TEXT_ROWS):
            row = 1 + len(METRICS) + offset
            self._set(row, 0, value(a))
            self._set(row, 1, value(b))
            self._set(row, 2, "same" if value(a) == value(b) else "differs")

    def _show_status(self, a: RunRecord, b: RunRecord) -> None:
        """First row: broken (red) or busy machine (amber), the cause on hover."""
        for column, record in enumerate((a, b)):
            item = self._set(0, column, status_text(record) or "healthy")
            item.setToolTip(status_detail(record) or "healthy, timed on a quiet machine")
            color = BROKEN_COLOR if record.broken else BUSY_COLOR if record.machine_busy else None
            if color is not None:
                item.setBackground(QBrush(QColor(color)))
                item.setForeground(QBrush(QColor("white" if record.broken else "black")))
        # by kind: two busy runs' load readings always differ in their numbers
        same = status_text(a) == status_text(b)
        self._set(0, 2, "same" if same else "differs")

    def cell(self, row_name: str, column: int) -> str:
        return self.table.item(ROW_NAMES.index(row_name), column).text()

    def _set(self, row: int, column: int, text: str) -> QTableWidgetItem:
        item = QTableWidgetItem(text)
        item.setToolTip(text)
        self.table.setItem(row, column, item)
        return item
