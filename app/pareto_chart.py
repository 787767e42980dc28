"""The trade-off chart: every run as a point, the Pareto front drawn,
the original marked; axes selectable; clicking a point selects its run."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.chart_axes import padded_range, readable_axes
from app.run_status import BROKEN_COLOR, short_cause, status_detail
from app.sizes import UNIT, megabytes
from core.evaluate.protocol_text import text_of
from core.measure.compare import same_model_files, speed_range
from core.results.pareto import pareto_front, reference_run, why_off_front
from core.results.store import RunRecord

X_AXES = {
    "Decode ms/token": lambda r: r.metric("decode_ms_per_token"),
    f"Size {UNIT}": lambda r: megabytes(r.bytes),
    "Prefill ms": lambda r: r.metric("prefill_ms"),
    "Classifier latency ms": lambda r: r.metric("latency_ms"),
}
Y_AXES = {
    "Perplexity": lambda r: r.metric("ppl"),
    "1 - top-1 agreement": lambda r: _one_minus(r.metric("top1_agreement")),
    "Classifier error (1 - accuracy)": lambda r: _one_minus(r.metric("accuracy")),
}

# The record metric each axis reads: the one the front's rule checks
# (core.results.pareto.why_off_front).
AXIS_METRICS = {
    "Decode ms/token": "decode_ms_per_token",
    f"Size {UNIT}": "bytes",
    "Prefill ms": "prefill_ms",
    "Classifier latency ms": "latency_ms",
    "Perplexity": "ppl",
    "1 - top-1 agreement": "top1_agreement",
    "Classifier error (1 - accuracy)": "accuracy",
}

# Each point's spread, drawn as error bars: a timed axis's p10 to p90 (the
# protocol's runs), a quality axis's 95% interval; None where not stored.
X_SPREADS = {
    "Decode ms/token": lambda r: _ends(speed_range(r.metric, "decode_ms_per_token")),
    "Classifier latency ms": lambda r: _ends(speed_range(r.metric, "latency_ms")),
}
Y_SPREADS = {
    "Perplexity": lambda r: _pair(r.metric("ppl_ci95_low"), r.metric("ppl_ci95_high")),
    "Classifier error (1 - accuracy)": lambda r: _pair(
        _one_minus(r.metric("accuracy_ci95_high")), _one_minus(r.metric("accuracy_ci95_low"))
    ),
}


# Up to this many points each get a label; beyond it only the Pareto front,
# the original and the latest run do (the rest say theirs on hover): labels
# for hundreds of points overlap into a smear and cost a TextItem each redraw.
LABEL_ALL_UP_TO = 30


def _one_minus(value: float | None) -> float | None:
    return None if value is None else 1 - value


def _ends(spread) -> tuple[float, float] | None:
    return None if spread is None else (spread.p10, spread.p90)


def _pair(low: float | None, high: float | None) -> tuple[float, float] | None:
    return None if low is None or high is None else (low, high)


class ParetoChart(QWidget):
    record_clicked = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.records: list[RunRecord] = []
        self.model: str | None = None  # only this model's runs are plotted (None: all)
        self.x_axis = QComboBox()
        self.x_axis.addItems(list(X_AXES))
        self.y_axis = QComboBox()
        self.y_axis.addItems(list(Y_AXES))
        self.plot = pg.PlotWidget(background="w", axisItems=readable_axes())
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.front = self.plot.plot(pen=pg.mkPen("#d62728", width=2, style=pg.QtCore.Qt.DashLine))
        self.scatter = pg.ScatterPlotItem(
            size=11, pen=pg.mkPen("k"), brush=pg.mkBrush("#1f77b4"), hoverable=True, tip=self._tip
        )
        self.original = pg.ScatterPlotItem(
            size=18, symbol="star", brush=pg.mkBrush("#ff7f0e"), hoverable=True, tip=self._tip
        )
        # A broken configuration (collapsed quality) is a red cross, never a
        # plain point: it is not a trade-off, and it is kept off the front.
        self.broken = pg.ScatterPlotItem(
            size=14,
            symbol="x",
            pen=pg.mkPen(BROKEN_COLOR, width=2),
            brush=pg.mkBrush(BROKEN_COLOR),
            hoverable=True,
            tip=self._tip,
        )
        # A run timed or scored otherwise than the reference (other threads,
        # protocol, text, a busy machine) is a hollow point, off the front:
        # on it, it would win by its protocol rather than its configuration.
        self.elsewhere = pg.ScatterPlotItem(
            size=11, pen=pg.mkPen("#7f7f7f", width=1.5), brush=pg.mkBrush(None),
            hoverable=True, tip=self._tip,
        )  # fmt: skip
        self.error_bars = pg.ErrorBarItem(pen=pg.mkPen("#555", width=1), beam=0)
        self.plot.addItem(self.error_bars)
        self.reference: RunRecord | None = None  # the run the front is measured like
        for item in (self.scatter, self.elsewhere, self.original, self.broken):
            self.plot.addItem(item)
        self.labels: list[pg.TextItem] = []
        self.spreads: dict[str, list[float]] = {}
        row = QHBoxLayout()
        row.addWidget(QLabel("x"))
        row.addWidget(self.x_axis)
        row.addWidget(QLabel("y"))
        row.addWidget(self.y_axis)
        row.addSpacing(12)
        legend = QLabel(
            "★ original &nbsp; - - Pareto front (lower is better on both) &nbsp; "
            "bars: p10-p90 of the timed runs, 95% interval of quality &nbsp; "
            "○ measured otherwise than the latest original (off the front) &nbsp; "
            f"<span style='color:{BROKEN_COLOR}'>✕ broken (quality collapsed)</span>"
        )
        legend.setWordWrap(True)  # wraps rather than widening the whole window
        row.addWidget(legend, 1)
        # Why the chart shows no front, or nothing at all, in words.
        self.note = QLabel("")
        self.note.setObjectName("pareto_note")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8a6d00;")
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.note)
        layout.addWidget(self.plot)
        self.x_axis.currentIndexChanged.connect(self.redraw)
        self.y_axis.currentIndexChanged.connect(self.redraw)
        for item in (self.scatter, self.elsewhere, self.original, self.broken):
            item.sigClicked.connect(self._clicked)

    def show_model(self, source: str, classifier: bool) -> None:
        """Plot ``source``'s runs, on the axes that fit its kind."""
        self.model = source
        x, y = ("Classifier latency ms", "Classifier error (1 - accuracy)")
        if not classifier:
            x, y = "Decode ms/token", "Perplexity"
        self.x_axis.setCurrentText(x)
        self.y_axis.setCurrentText(y)
        self.redraw()

    def add(self, record: RunRecord) -> None:
        self.add_many([record])

    def add_many(self, records: list[RunRecord]) -> None:
        """Add runs and redraw once (the stored runs at start: one redraw, not one each)."""
        self.records.extend(records)
        self.redraw()

    def plotted(self) -> list[tuple[RunRecord, float, float]]:
        fx, fy = X_AXES[self.x_axis.currentText()], Y_AXES[self.y_axis.currentText()]
        out = []
        for r in self.records:
            if self.model is not None and r.model != self.model:
                continue
            x, y = fx(r), fy(r)
            if _finite(x) and _finite(y):  # a value that is not a number has no place
                out.append((r, x, y))
        return out

    def front_records(self) -> list[RunRecord]:
        healthy = self._on_front(self.plotted())
        return [healthy[i][0] for i in pareto_front([(x, y) for _, x, y in healthy])]

    def off_front(self, record: RunRecord) -> str:
        """Why ``record`` is not on the front ("" when it may be): broken, or
        measured otherwise than the reference run on the axes shown."""
        axes = (self.x_axis.currentText(), self.y_axis.currentText())
        return why_off_front(record, self.reference, tuple(AXIS_METRICS[a] for a in axes))

    def _on_front(self, points):
        """The plotted runs the front is drawn from; sets the reference: the
        latest quiet original (core.results.pareto.reference_run) of those shown."""
        self.reference = reference_run([r for r, _, _ in points])
        return [p for p in points if not self.off_front(p[0])]

    def redraw(self) -> None:
        points = self.plotted()
        self.plot.setLabel("bottom", self.x_axis.currentText())
        self.plot.setLabel("left", self.y_axis.currentText())
        on_front = self._on_front(points)
        healthy = [p for p in points if not p[0].broken]
        # The y range fits the healthy runs: a collapsed run's perplexity
        # (often 1e6 times the rest) would flatten every real trade-off. A
        # broken run beyond it sits at the edge, its value in its label.
        # Interval ends count too, so every bar fits.
        y_values = [y for _, _, y in healthy or points]
        fy = Y_SPREADS.get(self.y_axis.currentText(), lambda r: None)
        y_values += [end for r, _, _ in healthy for end in fy(r) or ()]
        y_range = padded_range(y_values) if points else None
        shown = [(r, x, y, _on_chart(y, y_range)) for r, x, y in points]

        def spots(keep):
            return [{"pos": (x, at), "data": r} for r, x, _, at in shown if keep(r)]

        # measured otherwise: neither on the front's pool nor broken (one rule call a run)
        pooled = {id(r) for r, _, _ in on_front}
        otherwise = {id(r) for r, _, _ in points if not r.broken and id(r) not in pooled}
        self.scatter.setData(
            spots(lambda r: not r.is_original and not r.broken and id(r) not in otherwise)
        )
        self.elsewhere.setData(spots(lambda r: not r.is_original and id(r) in otherwise))
        self.original.setData(spots(lambda r: r.is_original and not r.broken))
        self.broken.setData(spots(lambda r: r.broken))
        self._draw_spreads(shown)
        front = pareto_front([(x, y) for _, x, y in on_front])
        self.front.setData([on_front[i][1] for i in front], [on_front[i][2] for i in front])
        x_range = (0.0, 1.0)  # no runs: empty axes, not the last model's scale
        if points:
            # Explicit ranges: one point (or equal values) would otherwise get
            # a zero-width range and ticks like 23.25753336097595.
            fx = X_SPREADS.get(self.x_axis.currentText(), lambda r: None)
            x_values = [x for _, x, _ in points] + [e for r, _, _ in points for e in fx(r) or ()]
            x_range = padded_range(x_values)
        self.plot.setRange(xRange=x_range, yRange=y_range or (0.0, 1.0), padding=0)
        self.note.setText(self._note(points, len(on_front)))
        self.note.setVisible(bool(self.note.text()))
        for label in self.labels:
            self.plot.removeItem(label)
        self.labels = []
        middle = (x_range[0] + x_range[1]) / 2
        labelled = self._labelled([r for r, _, _ in points], [on_front[i][0] for i in front])
        placed = LabelSpace(self.plot, x_range, y_range or (0.0, 1.0))
        for r, x, y, at in sorted(shown, key=lambda s: _label_priority(s[0])):
            if id(r) not in labelled:
                continue
            # Right-half labels extend to the left, so none runs off the side.
            text, color = _short(r), "#333"
            if id(r) in otherwise:
                text += "".join(f" · {tag}" for tag in _how_else(r, self.reference))
            if r.broken:
                text, color = f"{text}: broken ({short_cause(r.broken)})", BROKEN_COLOR
                if at != y:
                    where = "above" if y > at else "below"
                    text += f"\n{self.y_axis.currentText()} {y:.3g}, {where} the chart"
            # Labels near the top hang below their point, so none leaves the chart.
            below = y_range is not None and at > y_range[1] - (y_range[1] - y_range[0]) / 4
            side, height = (1 if x > middle else 0), (0 if below else 1)
            # the preferred side first, then the other side, then the other height
            tries = [(side, height), (1 - side, height), (side, 1 - height)]
            anchor = next((a for a in tries if placed.take(text, x, at, a)), None)
            if anchor is None:
                if not (r.broken or r.is_original):
                    continue  # it would cover another label: its point keeps its hover text
                anchor = tries[0]
            label = pg.TextItem(text, color=color, anchor=anchor)
            label.setPos(x, at)
            self.plot.addItem(label)
            self.labels.append(label)

    def _note(self, points, pooled: int) -> str:
        """Why there is no front, where the chart alone would not say."""
        if not points:
            if self.model is None:
                return ""
            return "No runs of this model on these axes yet: press Run (the original first)."
        reference = self.reference
        if reference is not None and reference.is_original and reference.machine_busy:
            if pooled < 2:
                return (
                    "No front: the original was timed on a busy machine, so no run can be "
                    "ranked against it. Run the original again when the machine is quiet."
                )
        return ""

    def _labelled(self, plotted: list[RunRecord], front: list[RunRecord]) -> set[int]:
        """The runs whose points get a label (by id): all of a few; of many,
        the front, the original and the latest."""
        if len(plotted) <= LABEL_ALL_UP_TO:
            return {id(r) for r in plotted}
        chosen = [*front, *(r for r in plotted if r.is_original), plotted[-1]]
        return {id(r) for r in chosen}

    def _draw_spreads(self, shown) -> None:
        """Error bars: each point's p10-p90 (timed x) and 95% interval
        (quality y); a point pinned to the chart's edge gets no y bar, its
        value being off the chart."""
        fx = X_SPREADS.get(self.x_axis.currentText(), lambda r: None)
        fy = Y_SPREADS.get(self.y_axis.currentText(), lambda r: None)
        bars = {"x": [], "y": [], "left": [], "right": [], "bottom": [], "top": []}
        for r, x, y, at in shown:
            x_ends, y_ends = fx(r), fy(r) if at == y else None
            if x_ends is None and y_ends is None:
                continue
            bars["x"].append(x)
            bars["y"].append(at)
            bars["left"].append(x - x_ends[0] if x_ends else 0.0)
            bars["right"].append(x_ends[1] - x if x_ends else 0.0)
            bars["bottom"].append(y - y_ends[0] if y_ends else 0.0)
            bars["top"].append(y_ends[1] - y if y_ends else 0.0)
        self.error_bars.setVisible(bool(bars["x"]))
        if bars["x"]:
            self.error_bars.setData(**{k: np.array(v, dtype=float) for k, v in bars.items()})
        self.spreads = bars  # what was drawn, for tests and tooltips

    def _clicked(self, _item, spots) -> None:
        if spots:
            self.record_clicked.emit(spots[0].data())

    def _tip(self, x: float, y: float, data: RunRecord) -> str:
        """A point's hover text: the run, its measured numbers on the two axes
        (not the drawn position, which is pinned for an off-chart point) and
        why it is broken or its timing doubtful."""
        x_name, y_name = self.x_axis.currentText(), self.y_axis.currentText()
        values = f"{x_name}: {X_AXES[x_name](data):.4g}{_range_text(X_SPREADS, x_name, data)}; "
        values += f"{y_name}: {Y_AXES[y_name](data):.4g}{_range_text(Y_SPREADS, y_name, data)}"
        where = f"{data.backend or 'torch'} on {data.device}, {data.threads} threads; {data.model}"
        why = self.off_front(data)
        off = f"off the front: {why}" if why and not data.broken else ""
        return "\n".join(filter(None, [data.recipe_name, values, where, off, status_detail(data)]))


def _how_else(record: RunRecord, reference: RunRecord | None) -> list[str]:
    """Short tags for a hollow point's label: how it was measured otherwise
    than the reference (the whole reason is on hover)."""
    if reference is None:
        return []
    tags = []
    if (record.device, record.threads) != (reference.device, reference.threads):
        tags.append(
            f"{record.threads} threads"
            + (f" on {record.device}" if record.device != reference.device else "")
        )
    if record.bench_protocol != reference.bench_protocol:
        tags.append("other timing protocol")
    if record.machine_busy:
        tags.append("busy machine")
    if record.model != reference.model:
        tags.append("other model")
    elif not same_model_files(record, reference):
        tags.append("other files of the model")
    elif record.eval_protocol != reference.eval_protocol:
        tags.append(text_of(record.eval_protocol) or "other eval protocol")
    return tags


def _range_text(spreads: dict, axis: str, record: RunRecord) -> str:
    ends = spreads.get(axis, lambda r: None)(record)
    return "" if ends is None else f" ({ends[0]:.4g} to {ends[1]:.4g})"


def _on_chart(y: float, y_range: tuple[float, float]) -> float:
    """Where to draw ``y``: itself inside the range, else just inside its edge."""
    low, high = y_range
    inset = (high - low) * 0.04
    return min(max(y, low + inset), high - inset) if not low <= y <= high else y


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _short(record: RunRecord) -> str:
    """A point label: pass names with their option values."""
    parts = []
    for p in record.recipe.get("passes", []):
        values = [str(v) for k, v in p.items() if k not in ("pass", "version")]
        parts.append(str(p["pass"]) + (f"({','.join(values)})" if values else ""))
    label = " + ".join(parts) or "original"
    return label if record.backend == "torch" else f"{label} [{record.backend}]"


def _label_priority(record: RunRecord) -> tuple[int, float]:
    """Labels placed first win a contested spot: the original, broken runs,
    then the rest, latest first."""
    rank = 0 if record.is_original else 1 if record.broken else 2
    return (rank, -record.created)


class LabelSpace:
    """The chart's labels as boxes in data units, so a label that would
    cover another is left to its point's hover text (four labels on one
    spot were unreadable). Sizes come from the font and the plot's pixels."""

    def __init__(self, plot, x_range, y_range) -> None:
        from PySide6.QtGui import QFontMetrics

        box = plot.getViewBox()
        width_px, height_px = max(box.width(), 300.0), max(box.height(), 200.0)
        self._per_px_x = (x_range[1] - x_range[0]) / width_px
        self._per_px_y = (y_range[1] - y_range[0]) / height_px
        self._metrics = QFontMetrics(plot.font())  # TextItem draws in the widget's font
        self._boxes: list[tuple[float, float, float, float]] = []

    def take(self, text: str, x: float, y: float, anchor: tuple[int, int]) -> bool:
        """Reserve the label's box; False (nothing reserved) if it overlaps one."""
        lines = text.split("\n")
        width = (max(self._metrics.horizontalAdvance(line) for line in lines) + 6) * self._per_px_x
        height = (self._metrics.lineSpacing() * len(lines) + 4) * self._per_px_y
        left = x - width if anchor[0] == 1 else x
        bottom = y if anchor[1] == 1 else y - height  # anchor y 1: the text sits above
        box = (left, bottom, left + width, bottom + height)
        if any(_overlap(box, other) for other in self._boxes):
            return False
        self._boxes.append(box)
        return True


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
