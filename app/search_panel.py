"""Search under the user's limits: size, speed, quality and a time budget;
Start and Cancel; a log of every candidate proposed, dropped (and why) or
measured; the best so far that meets the limits. The search is a core job
(core/jobs/search.py) run on the window's one worker; each configuration it
measures arrives as a RunRecord and joins the results table and the
trade-off chart like any run."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.model_gate import ModelGate
from core.search.events import BestSoFar, SearchFinished, SearchStarted

# (limit field, label, default, minimum, maximum, step, decimals, suffix, on by default)
LIMIT_CONTROLS = (
    ("max_bytes_ratio", "Size at most", 0.35, 0.01, 10.0, 0.05, 3, "x the original", True),
    ("max_ppl_increase_pct", "Perplexity increase at most", 10.0, 0.0, 1000.0, 1.0, 2, " %", False),
    ("max_kl", "KL to the original at most", 0.05, 0.0001, 100.0, 0.01, 4, " nats", False),
    ("max_decode_ms", "Decode at most", 100.0, 0.1, 100_000.0, 5.0, 1, " ms/token", False),
    ("min_tokens_per_s", "Tokens per second at least", 10.0, 0.1, 100_000.0, 1.0, 1, "", False),
    ("min_accuracy", "Accuracy at least (classifier)", 0.8, 0.01, 1.0, 0.01, 3, "", False),
)
OBJECTIVE_TITLES = {
    "ppl": "Smallest perplexity increase",
    "kl": "Smallest KL to the original",
    "bytes": "Smallest size",
    "speed": "Fastest on this machine",
    "accuracy": "Highest accuracy (classifier)",
}


@dataclass(frozen=True)
class SearchChoice:
    """What the panel asks for; the window adds the model, runtime and settings."""

    limits: object  # core.search.limits.Limits
    objective: str
    budget_s: float
    ray_address: str | None

    @property
    def title(self) -> str:
        return OBJECTIVE_TITLES[self.objective].lower()

    def request(self, loaded, runtime: str, settings, threads, store_path):
        from core.jobs.search import SearchRequest

        return SearchRequest(
            loaded,
            self.limits,
            self.objective,
            self.budget_s,
            runtime,
            settings,
            threads,
            self.ray_address,
            store_path=store_path,
        )


class SearchPanel(QWidget):
    search_requested = Signal(object)  # SearchChoice
    cancel_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.limit_boxes: dict[str, tuple[QCheckBox, QDoubleSpinBox]] = {}
        form = QFormLayout()
        for name, label, default, low, high, step, decimals, suffix, on in LIMIT_CONTROLS:
            check = QCheckBox(label)
            check.setChecked(on)
            spin = QDoubleSpinBox()
            spin.setRange(low, high)
            spin.setSingleStep(step)
            spin.setDecimals(decimals)
            spin.setValue(default)
            spin.setSuffix(suffix)
            spin.setEnabled(on)
            check.toggled.connect(spin.setEnabled)
            self.limit_boxes[name] = (check, spin)
            form.addRow(check, spin)
        self.objective = QComboBox()
        for key, title in OBJECTIVE_TITLES.items():
            self.objective.addItem(title, key)
        form.addRow("Best is the", self.objective)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.1, 24 * 60)
        self.minutes.setValue(30.0)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("time budget: no new measurement starts once it is spent")
        form.addRow("Time budget", self.minutes)
        self.ray = QLineEdit()
        self.ray.setPlaceholderText("empty: this machine; 'auto' or a Ray address")
        self.ray.setToolTip(
            "Score candidates' quality proxies as Ray tasks on a cluster; speed is always "
            "measured here, one configuration at a time"
        )
        form.addRow("Ray cluster", self.ray)
        self.start_button = QPushButton("Start search")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("stop; every configuration measured so far is kept")
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        self.status = QLabel("Set the limits and the budget, and start.")
        self.status.setWordWrap(True)
        self.gate = ModelGate(self.start_button, self.status)
        box = QGroupBox("Limits and budget")
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(form)
        box_layout.addLayout(buttons)
        box_layout.addWidget(self.status)
        box_layout.addStretch(1)

        self.best = QLabel("Best so far: none yet")
        self.best.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        right = QVBoxLayout()
        right.addWidget(self.best)
        heading = QLabel("Candidates: proposed, dropped (why), measured")
        heading.setWordWrap(True)  # unwrapped, it set the tab's (and window's) least width
        right.addWidget(heading)
        right.addWidget(self.log, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(box)
        layout.addLayout(right, 1)

        self._running = False
        self.start_button.clicked.connect(self._request)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.set_ready(False, False)

    def set_ready(self, ready: bool, busy: bool) -> None:
        """Start needs a model and an idle worker; Cancel stops this panel's search."""
        if not busy:
            self._running = False
        self.gate.set_ready(ready)
        self.cancel_button.setEnabled(busy and self._running)

    def follow_model_kind(self, classifier: bool) -> None:
        """The objective the loaded model can measure: a classifier has no perplexity."""
        self.objective.setCurrentIndex(self.objective.findData("accuracy" if classifier else "ppl"))

    def begin(self) -> None:
        self._running = True
        self.cancel_button.setEnabled(True)
        self.log.clear()
        self.best.setText("Best so far: none yet")
        self.status.setText("Searching…")

    def on_event(self, event) -> None:
        from core.cli.search import event_line

        line = event_line(event)
        if line:
            self.log.appendPlainText(line)
        if isinstance(event, SearchStarted):
            self.status.setText(f"Searching: {event.objective}; {event.limits}")
        elif isinstance(event, BestSoFar):
            self.best.setText(best_text(event))
            self.best.setToolTip(best_detail(event))
        elif isinstance(event, SearchFinished):
            self._running = False
            found = "" if event.best else " No measured configuration meets the limits."
            self.status.setText(
                f"Done ({event.stopped}) in {event.elapsed_s:.0f} s: {event.measured} measured, "
                f"{event.reused} reused, {event.rejected} dropped.{found}"
            )

    def choice(self) -> SearchChoice:
        """The panel's limits and budget (ValueError naming what is wrong)."""
        from core.search.limits import Limits

        chosen = [(name, check, spin) for name, (check, spin) in self.limit_boxes.items()]
        values = {name: spin.value() for name, check, spin in chosen if check.isChecked()}
        address = self.ray.text().strip() or None
        return SearchChoice(
            Limits(**values), self.objective.currentData(), self.minutes.value() * 60, address
        )

    def _request(self) -> None:
        try:
            choice = self.choice()
        except ValueError as err:
            self.status.setText(f"Cannot search: {err}")
            return
        self.search_requested.emit(choice)


def best_text(event: BestSoFar) -> str:
    """The best so far with how it was measured, as the CLI's summary says it
    (core/cli/search.py): runtime, threads, a busy machine; the protocols
    are in ``best_detail``, on hover."""
    record = event.record
    parts = [f"{record.bytes / 1e6:.1f} MB ({event.bytes_ratio:.3f}x)"]
    if event.ppl_increase_pct is not None:
        parts.append(f"perplexity {event.ppl_increase_pct:+.2f}%")
    elif record.metric("ppl") is not None:
        parts.append(f"perplexity {record.metric('ppl'):.3f} (change not comparable)")
    decode = record.metric("decode_ms_per_token")
    if decode is not None:
        parts.append(f"decode {decode:.1f} ms/token")
    accuracy = record.metric("accuracy")
    if accuracy is not None:
        parts.append(f"accuracy {accuracy:.1%}")
    where = f"{record.backend or 'torch'} on {record.device}, {record.threads} threads"
    busy = "; BUSY MACHINE" if record.machine_busy else ""
    return f"Best so far: {event.label}: " + ", ".join(parts) + f" ({where}{busy})"


def best_detail(event: BestSoFar) -> str:
    record = event.record
    lines = [f"speed protocol: {record.bench_protocol}"]
    lines.append(f"quality protocol: {record.eval_protocol or 'not evaluated'}")
    if record.machine_busy:
        lines.append(f"busy machine: {record.machine_busy}")
    return "\n".join(lines)
