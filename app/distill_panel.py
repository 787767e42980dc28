"""Distil a smaller student from the loaded model: its shape, a budget, the
loss falling and the student's perplexity improving live; cancel any time,
resume from the last checkpoint later."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.model_gate import ModelGate
from app.run_status import BROKEN_COLOR
from app.series_chart import SeriesChart
from app.sizes import size_text
from core.distill.events import DistillEval, DistillResult, DistillResumed, DistillStep


class DistillPanel(QWidget):
    distill_requested = Signal(object, object, bool)  # StudentShape, DistillSettings, resume

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        from core.distill.settings import DistillSettings

        d = DistillSettings()
        self.drop_layers = QSpinBox()
        self.drop_layers.setRange(0, 64)
        self.drop_layers.setValue(8)
        self.drop_layers.setToolTip("whole layers removed, the least important by Block Influence")
        self.mlp_remove = QDoubleSpinBox()
        self.mlp_remove.setRange(0.0, 0.9)
        self.mlp_remove.setSingleStep(0.05)
        self.mlp_remove.setToolTip("fraction of MLP neurons removed in every layer")
        self.steps = QSpinBox()
        self.steps.setRange(1, 100_000)
        self.steps.setValue(d.steps or 200)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.0, 24 * 60)
        self.minutes.setValue(14.0)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("training time budget (0: steps only); whichever ends first")
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(6)
        self.learning_rate.setRange(1e-6, 1e-2)
        self.learning_rate.setSingleStep(1e-4)
        self.learning_rate.setValue(d.learning_rate)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.5, 10.0)
        self.temperature.setValue(d.temperature)
        self.resume = QCheckBox("Resume from the last checkpoint of this student")
        self.resume.setChecked(True)
        self.run_button = QPushButton("Distil")
        self.status = QLabel("The student starts as a pruned copy of the loaded model.")
        self.status.setWordWrap(True)
        self.gate = ModelGate(self.run_button, self.status)
        self.loss_chart = SeriesChart("Distillation loss (T² KL to the teacher)", "step", "loss")
        self.ppl_chart = SeriesChart(
            "Student perplexity (quick windows)", "step", "perplexity", color="#2ca02c"
        )

        form = QFormLayout()
        form.addRow("Drop layers", self.drop_layers)
        form.addRow("Remove MLP neurons", self.mlp_remove)
        form.addRow("Step budget", self.steps)
        form.addRow("Time budget", self.minutes)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Temperature", self.temperature)
        box = QGroupBox("Student and training")
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(form)
        box_layout.addWidget(self.resume)
        box_layout.addWidget(self.run_button)
        box_layout.addWidget(self.status)
        box_layout.addStretch(1)
        box.setMaximumWidth(360)
        charts = QVBoxLayout()
        charts.addWidget(self.loss_chart)
        charts.addWidget(self.ppl_chart)
        layout = QHBoxLayout(self)
        layout.addWidget(box)
        layout.addLayout(charts, 1)
        self.run_button.clicked.connect(self._request)

    def set_ready(self, ready: bool) -> None:
        self.gate.set_ready(ready)

    def set_model_layers(self, layers: int | None) -> None:
        """The loaded model's layer count: a student keeps at least one."""
        most = max(layers - 1, 0) if layers else 64
        self.drop_layers.setRange(0, most)  # clamps the value too
        self.drop_layers.setToolTip(
            "whole layers removed, the least important by Block Influence "
            f"(at most {most} of this model's {layers})"
            if layers
            else "whole layers removed, the least important by Block Influence"
        )

    def end(self, outcome: str | None) -> None:
        """A distillation that failed or was cancelled says so (None: it
        finished, and the result line stays)."""
        if outcome:
            last = self.status.text()
            self.status.setText(outcome + (f" (last: {last})" if last.startswith("step") else ""))

    def clear(self) -> None:
        """Another model is loaded: the last teacher's curves go (the status
        line is the model gate's, ModelGate.refuse)."""
        self.loss_chart.clear_points()
        self.ppl_chart.clear_points()
        self.status.setStyleSheet("")

    def begin(self) -> None:
        self.clear()
        self.status.setStyleSheet("")
        self.status.setText("Building the student…")

    def on_event(self, event) -> None:
        if isinstance(event, DistillResumed):
            for step, loss in enumerate(event.losses, start=1):
                self.loss_chart.add_point(step, loss)
            self.status.setText(f"Resumed at step {event.step} from {event.path}")
        elif isinstance(event, DistillStep):
            self.loss_chart.add_point(event.step, event.loss)
            total = f"/{event.steps_total}" if event.steps_total else ""
            self.status.setText(
                f"step {event.step}{total}: loss {event.loss:.4f}, lr {event.lr:.1e}, "
                f"{event.elapsed_s:.0f} s training"
            )
        elif isinstance(event, DistillEval):
            self.ppl_chart.add_point(event.step, event.ppl)
            self.ppl_chart.setToolTip(f"protocol: {event.protocol}")
        elif isinstance(event, DistillResult):
            self.status.setText(
                f"Distilled {event.step} steps in {event.train_s:.0f} s (stopped by "
                f"{event.stopped}); now measuring the student like any configuration."
            )

    def show_measured(self, record) -> None:
        """The student's run: its line replaces "now measuring" (which stayed
        after the measurement, even for a student that came out broken)."""
        ppl, decode = record.metric("ppl"), record.metric("decode_ms_per_token")
        numbers = ", ".join(
            part
            for part in (
                f"perplexity {ppl:.2f}" if ppl is not None else "",
                f"decode {decode:.2f} ms/token" if decode is not None else "",
                f"{size_text(record.bytes)}" if record.bytes else "",
            )
            if part
        )
        text = f"Student measured ({record.recipe_name}): {numbers}; in the Results tab."
        if record.broken:
            text = f"BROKEN: {record.broken}\n{text}"
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {BROKEN_COLOR};" if record.broken else "")

    def _request(self) -> None:
        from core.distill.settings import DistillSettings
        from core.distill.student import StudentShape

        try:
            shape = StudentShape(self.drop_layers.value(), self.mlp_remove.value())
            shape.recipe()
            settings = DistillSettings(
                steps=self.steps.value(),
                time_budget_s=self.minutes.value() * 60 or None,
                learning_rate=self.learning_rate.value(),
                temperature=self.temperature.value(),
            )
        except ValueError as err:
            self.status.setText(f"Cannot distil: {err}")
            return
        self.distill_requested.emit(shape, settings, self.resume.isChecked())
