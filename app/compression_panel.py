"""Compression controls drawn from the pass metadata: one group per pass,
one control per option (slider, combo or spin box, with the option's
description as tooltip), an instant size estimate, and the reason when a
combination cannot work."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.eval_text_control import EvaluationTextControl
from app.sizes import size_text
from core.jobs.experiment import BACKENDS
from core.passes import REGISTRY
from core.passes.base import OptionError
from core.passes.recipe import Recipe, RecipeError, validate

# Structural passes first, the quantization last: the order a recipe runs in.
DISPLAY_ORDER = [
    "prune_layers",
    "prune_heads",
    "prune_mlp",
    "heal",  # after structured pruning, before anything that heal would undo
    "prune_unstructured",
    "prune_wanda",
    "prune_sparsegpt",
    "low_rank",
    "low_rank_aware",
    "cast",
    "int8_weight_only",
    "int8_dynamic",
    "int4_weight_only",
    "int8_head",
]


class FloatSlider(QWidget):
    """A slider over [minimum, maximum] in steps, showing its value."""

    valueChanged = Signal(float)  # noqa: N815 (Qt naming)

    def __init__(self, minimum: float, maximum: float, step: float, value: float) -> None:
        super().__init__()
        self.minimum, self.step = minimum, step
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, round((maximum - minimum) / step))
        self.label = QLabel()
        self.label.setMinimumWidth(36)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow(self.label, self.slider)
        self.slider.valueChanged.connect(self._changed)
        self.set_value(value)
        self._changed()

    def value(self) -> float:
        return round(self.minimum + self.slider.value() * self.step, 6)

    def set_value(self, value: float) -> None:
        self.slider.setValue(round((value - self.minimum) / self.step))

    def _changed(self) -> None:
        self.label.setText(f"{self.value():g}")
        self.valueChanged.emit(self.value())


class PassControls(QGroupBox):
    changed = Signal()

    def __init__(self, cls) -> None:
        super().__init__(cls.title)
        self.cls = cls
        self.setCheckable(True)
        self.setChecked(False)
        self.setToolTip((cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "")
        self.controls: dict[str, QWidget] = {}
        form = QFormLayout(self)
        for spec in cls.options():
            if spec.recorded:  # written by the run (heal's steps), not set by a person
                continue
            if spec.choices:
                widget = QComboBox()
                for choice in spec.choices:
                    widget.addItem(str(choice), choice)
                widget.setCurrentIndex(spec.choices.index(spec.default))
                widget.currentIndexChanged.connect(self.changed)
            elif spec.type == "str":  # a scope: layers "0-3,28", parts "q,k,v"
                widget = QLineEdit(spec.default)
                widget.setPlaceholderText("all")
                widget.setClearButtonEnabled(True)
                widget.textChanged.connect(self.changed)
            elif spec.type == "int":
                widget = QSpinBox()
                widget.setRange(int(spec.minimum), int(spec.maximum))
                widget.setValue(spec.default)
                widget.valueChanged.connect(self.changed)
            else:
                widget = FloatSlider(spec.minimum, spec.maximum, spec.step, spec.default)
                widget.valueChanged.connect(self.changed)
            widget.setToolTip(spec.description)
            self.controls[spec.name] = widget
            form.addRow(spec.label, widget)
        self.toggled.connect(self.changed)

    def config(self):
        if not self.isChecked():
            return None
        values = {}
        for name, widget in self.controls.items():
            if isinstance(widget, QComboBox):
                values[name] = widget.currentData()
            elif isinstance(widget, QLineEdit):
                values[name] = widget.text().strip()
            else:
                values[name] = widget.value()
        return self.cls(**values)  # OptionError for a scope that does not parse

    def set_config(self, config) -> None:
        self.setChecked(config is not None)
        if config is None:
            return
        for name, widget in self.controls.items():
            value = getattr(config, name)
            if isinstance(widget, QComboBox):
                widget.setCurrentIndex(widget.findData(value))
            elif isinstance(widget, QLineEdit):
                widget.setText(value)
            elif isinstance(widget, FloatSlider):
                widget.set_value(value)
            else:
                widget.setValue(value)


class CompressionPanel(QGroupBox):
    run_requested = Signal(object)  # Recipe

    def __init__(self, parent=None) -> None:
        super().__init__("Compression", parent)
        self.model = None
        self._inventory = None  # the model's size inventory, taken once in set_model
        self._graph = False  # a loaded ONNX graph: measured as it was built (set_model)
        self._source = ""
        self._chosen_backend = "torch"  # the user's Run on while a graph shows its own
        self._busy = False
        self.groups = {name: PassControls(REGISTRY[name]) for name in DISPLAY_ORDER}
        self.estimate = QLabel("Load a model to see the size estimate")
        self.estimate.setObjectName("size_estimate")
        self.estimate.setWordWrap(True)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020;")
        self.run_button = QPushButton("Build, benchmark, evaluate")
        self.backend = QComboBox()
        for key, label in BACKENDS.items():
            self.backend.addItem(label, key)
        # Its longest runtime name set the whole left column's width (and the
        # window's past 1,280 px): the closed box elides, the open list does not.
        self.backend.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.backend.setMinimumContentsLength(28)
        view = self.backend.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 24)
        self.backend.setToolTip(
            "Where the configuration runs. PyTorch compiled compiles the decode step with "
            "torch.compile first (tens of seconds, once per configuration). ONNX Runtime "
            "exports it first (checked against PyTorch; cached), int8 adds ONNX Runtime's "
            "dynamic quantization on top."
        )
        layout = QVBoxLayout(self)
        for group in self.groups.values():
            layout.addWidget(group)
            group.changed.connect(self.refresh)
        # The estimate, the reason Run is greyed, where it runs and Run itself:
        # the window pins them under the scrolled passes (below fourteen pass
        # groups they were ~1,400 px down a scroll).
        self.footer = QWidget()
        footer = QVBoxLayout(self.footer)
        footer.setContentsMargins(0, 0, 0, 0)
        footer.addWidget(self.estimate)
        footer.addWidget(self.problem)
        run_row = QHBoxLayout()
        run_row.addWidget(QLabel("Run on"))
        run_row.addWidget(self.backend, 1)
        footer.addLayout(run_row)
        self.eval_text = EvaluationTextControl()
        footer.addWidget(self.eval_text)
        footer.addWidget(self.run_button)
        self.run_button.clicked.connect(lambda: self.run_requested.emit(self.recipe()))
        self.backend.currentIndexChanged.connect(self.refresh)
        self.refresh()

    def set_busy(self, busy: bool) -> None:
        """A job is running: Run waits. The panel alone decides Run's state
        (recipe valid, a model loaded, no job), so a slider moved during a
        run cannot re-enable it."""
        self._busy = busy
        self.refresh()

    def set_model(self, model, source: str = "the loaded model", description=None) -> None:
        """A loaded model (``description``: its ModelDescription). An ONNX
        graph runs as it was built: Run on shows its runtime, greyed, Run
        measures it there (a pass left on is refused), and its size is its
        stored weights."""
        from core.jobs.loaded_graph import graph_runtime
        from core.runtime.runners import is_onnx_runtime

        was_graph = self._graph
        self.model, self._source = model, source
        self._graph = is_onnx_runtime(model)
        if self._graph and not was_graph:
            self._chosen_backend = self.backend_key()  # given back with a PyTorch model
        elif was_graph and not self._graph:
            self._show_backend(self._chosen_backend)
        # The passes stay enabled so that a recipe left on can be switched off;
        # Run says why it waits while one is.
        self.backend.setEnabled(not self._graph)
        if self._graph:
            self._original_bytes = description.bytes_in_memory if description else None
            self._inventory = None
            self._show_backend(graph_runtime(model) or "torch")
        else:
            from core.models.size import measure_size
            from core.passes.size_estimate import inventory

            self._original_bytes = measure_size(model).total_bytes  # once, not per slider move
            self._inventory = inventory(model)  # likewise: walks every module
        self.refresh()

    def recipe(self) -> Recipe:
        configs = [g.config() for g in self.groups.values()]
        return Recipe(tuple(c for c in configs if c is not None))

    def backend_key(self) -> str:
        return self.backend.currentData()

    def chosen_backend(self) -> str:
        """The user's Run on (kept between sessions), not a graph's own."""
        return self._chosen_backend if self._graph else self.backend_key()

    def set_backend(self, key: str) -> None:
        """The user's Run on. While a graph is loaded it is kept for the next
        PyTorch model: the combo shows the graph's own runtime (a restored
        row set it to PyTorch eager, greyed, under the graph)."""
        if self._graph:
            self._chosen_backend = key
            return
        self._show_backend(key)

    def _show_backend(self, key: str) -> None:
        self.backend.setCurrentIndex(max(0, self.backend.findData(key)))

    def set_recipe(self, recipe: Recipe) -> None:
        by_name = {p.name: p for p in recipe.passes}
        for name, group in self.groups.items():
            group.blockSignals(True)
            group.set_config(by_name.get(name))
            group.blockSignals(False)
        self.refresh()

    def add_override(self, layer: int, parts: str = "") -> str:
        """Give ``layer`` int8 weight-only (on ``parts``, e.g. "q,k,v,o"; "":
        the whole layer), as a click on the sensitivity map asks: the int8
        group gets the layer, and int4, when on, leaves it (two quantizations
        of one layer are refused). Returns what changed, in words."""
        from core.passes.scope import PARTS, parse_layers, parse_parts

        int8, int4 = self.groups["int8_weight_only"], self.groups["int4_weight_only"]
        layers_edit, parts_edit = int8.controls["layers"], int8.controls["parts"]
        count = self.model.config.num_hidden_layers if self.model is not None else layer + 1
        everything = set(range(count))
        try:
            had = parse_layers(layers_edit.text()) if int8.isChecked() else set()
            had_parts = parse_parts(parts_edit.text()) if int8.isChecked() else set()
        except ValueError:  # a scope being typed: start over from this layer
            had, had_parts = set(), set()
        chosen = everything if had is None else set(had) | {layer}
        # One parts list holds for all the int8 layers: "" (all) stays all.
        new_parts = None if had_parts is None or not parts else had_parts | set(parts.split(","))
        if int8.isChecked() and had_parts and new_parts != had_parts:
            widened = "; its parts now hold for every int8 layer"
        else:
            widened = ""
        int8.setChecked(True)
        layers_edit.setText(layers_text(chosen, count))
        parts_edit.setText(",".join(p for p in PARTS if p in new_parts) if new_parts else "")
        said = f"layer {layer}" + (f" ({parts})" if parts else "") + ": int8 weight-only"
        if int4.isChecked():
            edit = int4.controls["layers"]
            try:
                int4_layers = parse_layers(edit.text())
            except ValueError:
                int4_layers = None
            rest = (everything if int4_layers is None else set(int4_layers)) - chosen
            edit.setText(layers_text(rest, count))
            said += f"; int4 now skips layer {layer}"
            if not rest:  # "" would mean every layer: int4 has none left
                int4.setChecked(False)
                said += " and is off (no layer left)"
            if parts:
                said += " (its other parts stay unquantized)"
        self.refresh()
        return said + widened

    def refresh(self) -> None:
        try:
            recipe = self.recipe()
            validate(recipe)
            self.problem.setText("")
            valid = True
        except (RecipeError, OptionError) as err:  # a bad scope text is a RecipeError too
            self.problem.setText(f"Cannot run: {err}")
            recipe, valid = None, False
        runnable = valid
        if valid and self.model is not None and (refusal := self._model_refusal(recipe)):
            self.problem.setText(f"Cannot run: {refusal}")
            runnable = False
        self.run_button.setEnabled(runnable and self.model is not None and not self._busy)
        self._show_estimate(recipe, valid)  # a recipe this model refuses still has a size

    def _model_refusal(self, recipe: Recipe) -> str | None:
        """What the loaded model or the Run on choice refuses, known before any work."""
        from core.jobs.loaded_graph import graph_run_refusal
        from core.jobs.on_runtime import runtime_refusal

        if self._graph:
            return graph_run_refusal(self.model, self._source, recipe, self.backend_key())
        for config in recipe.passes:
            refusal = config.model_refusal(self.model.config)
            if refusal := refusal or config.module_refusal(self.model):
                return refusal
        return runtime_refusal(self.backend_key(), self.model, recipe)

    def _show_estimate(self, recipe: Recipe, valid: bool) -> None:
        if self.model is None or not valid:
            return
        if self._graph:
            stored = size_text(self._original_bytes) if self._original_bytes else "unknown"
            self.estimate.setText(
                f"ONNX graph: {stored} of stored weights, measured as it was exported on "
                f"{self.backend.currentText()}. The passes rewrite PyTorch modules: load the "
                "folder it was exported from to compress it."
            )
            return
        from core.passes.size_estimate import estimate_size

        original = self._original_bytes
        estimate = estimate_size(self.model, recipe, self._inventory)
        parts = ", ".join(f"{k} {size_text(v)}" for k, v in estimate.by_component.items() if v)
        change = (estimate.total_bytes / original - 1) * 100
        self.estimate.setText(
            f"Estimated size: {size_text(estimate.total_bytes)} ({change:+.0f}%)\n{parts}"
        )


def layers_text(layers: set[int], count: int) -> str:
    """{0, 1, 2, 3, 28} -> "0-3,28" (a scope's layers field); every layer -> ""."""
    if set(layers) >= set(range(count)):
        return ""
    runs: list[list[int]] = []
    for i in sorted(layers):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)
