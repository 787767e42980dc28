"""The Sensitivity tab: which layers (and which of their parts) hurt when
compressed. A layers x components heatmap fills live, cell by cell, as the
Sensitivity job (core/jobs/sensitivity.py) measures them on the window's one
worker; Cancel keeps what was measured, Start again measures only the rest
(the cells are stored next to the run store), and the stored map shows when
the model is loaded again. Clicking a cell of a quantization map gives that
layer (and part) int8 weight-only in the compression panel; the pruning
probes (MLP neurons, dropping the layer) have no per-layer override in a
recipe, so a click there says so in the status line."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.heatmap import Heatmap
from core.jobs.sensitivity import (
    COMPONENTS,
    SensitivityCell,
    SensitivityMap,
    SensitivityRequest,
    SensitivityResumed,
)

# The probes the job can limit to one layer: ScopedConfig passes, and the
# two pruning probes of core/jobs/sensitivity_probes.py (their own columns).
PROBES = {
    "int4 g128 RTN": ("int4_weight_only", {"group_size": 128, "method": "rtn"}),
    "int4 g128 GPTQ": ("int4_weight_only", {"group_size": 128, "method": "gptq"}),
    "int4 g128 AWQ (whole layers)": ("int4_weight_only", {"group_size": 128, "method": "awq"}),
    "int8 weight-only": ("int8_weight_only", {}),
    "25% of MLP neurons removed": ("prune_mlp", {"fraction": 0.25}),
    "Drop the layer": ("prune_layers", {}),
}
GRIDS = {
    "Whole layers": (),
    "Attention / MLP": tuple(COMPONENTS),
    "Each linear": ("q", "k", "v", "o", "gate", "up", "down"),
}  # not for the pruning probes: each has its own column
METRICS = {
    "KL to the original (nats/token)": lambda c: c.mean_kl,
    "Perplexity change (%)": lambda c: (c.ppl_ratio - 1) * 100,
}


def sensitivity_store(run_store):
    """The sensitivity store beside the window's run store (same folder)."""
    from core.results.sensitivity_store import SensitivityStore

    return SensitivityStore(run_store.path.parent / "sensitivity.jsonl")


def cell_tip(cell: SensitivityCell) -> str:
    where = f"layer {cell.layer}" + (f", {cell.part}" if cell.part else " (whole layer)")
    return (
        f"{where}\nKL to the original {cell.mean_kl:.5f} nats/token\n"
        f"perplexity change {(cell.ppl_ratio - 1) * 100:+.2f}% (x{cell.ppl_ratio:.4f})"
    )


class SensitivityPanel(QWidget):
    sensitivity_requested = Signal(object)  # SensitivityRequest
    override_requested = Signal(int, str)  # layer, parts ("" : the whole layer)

    def __init__(self, store, parent=None) -> None:
        super().__init__(parent)
        self.store = store  # core.results.sensitivity_store.SensitivityStore
        self.loaded = None
        # ExperimentSettings: the text scored and calibrated on (the window's choice)
        self._settings = lambda: None
        self._busy = False
        self._running = False
        self.cells: dict[tuple[int, str], SensitivityCell] = {}
        self._rows: list[str] = []
        self._columns: list[str] = [""]
        self.probe = QComboBox()
        self.probe.addItems(list(PROBES))
        self.probe.setToolTip("the compression applied to one layer (or part) at a time")
        self.grid = QComboBox()
        self.grid.addItems(list(GRIDS))
        self.grid.setToolTip("one cell per layer, or per layer and component or linear")
        self.windows = QSpinBox()
        self.windows.setRange(1, 32)
        self.windows.setValue(4)
        self.windows.setToolTip("dev-split windows of 512 tokens each cell is scored on")
        self.color_by = QComboBox()
        self.color_by.addItems(list(METRICS))
        self.start_button = QPushButton("Start")
        self.cancel_button = QPushButton("Cancel")
        self.status = QLabel("Load a causal language model to map its sensitivity.")
        self.status.setWordWrap(True)
        self.status.setObjectName("sensitivity_status")
        self.map = Heatmap("Sensitivity: one layer (or part) compressed at a time")

        form = QFormLayout()
        form.addRow("Compress with", self.probe)
        form.addRow("Cells", self.grid)
        form.addRow("Dev windows", self.windows)
        form.addRow("Colour by", self.color_by)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        hint = QLabel(
            "Scored on the dev split against the original: KL over its top-256 next tokens "
            "and the paired perplexity change. Cells are kept as they are measured; Start "
            "again measures only the missing ones. Click a cell: that layer (and part) gets "
            "int8 weight-only in the compression panel (a pruning probe has no per-layer "
            "override: the click says so)."
        )
        hint.setWordWrap(True)
        box = QGroupBox("Sensitivity map")
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(form)
        box_layout.addLayout(buttons)
        box_layout.addWidget(self.status)
        box_layout.addWidget(hint)
        box_layout.addStretch(1)
        box.setMaximumWidth(340)
        layout = QHBoxLayout(self)
        layout.addWidget(box)
        layout.addWidget(self.map, 1)

        self.start_button.clicked.connect(self._start)
        self.color_by.currentIndexChanged.connect(self._redraw)
        self.map.set_scale(self.color_by.currentText())
        for control in (self.probe, self.grid):
            control.currentIndexChanged.connect(self.show_stored)
        self.probe.currentIndexChanged.connect(self._update_buttons)
        self.windows.valueChanged.connect(self.show_stored)
        self.map.cell_clicked.connect(self._clicked)
        self._update_buttons()

    # --- wiring into the window: one job on its worker, events by type ------
    def connect_window(self, window) -> None:
        from core.jobs.sensitivity import sensitivity
        from core.models.loading import LoadedModel

        self._settings = window._run_settings  # the evaluation text chosen for runs
        window.router.subscribe(LoadedModel, self.set_model)
        window.router.subscribe(
            (SensitivityCell, SensitivityResumed, SensitivityMap), self.on_event
        )
        window.runner.busy_changed.connect(self.set_busy)
        # another text is another map: show the cells stored for it
        window.compression_panel.eval_text.combo.currentIndexChanged.connect(self.show_stored)
        self.cancel_button.clicked.connect(window.runner.cancel)

        def start(request) -> None:
            if window._start_job("Sensitivity map", sensitivity, request):
                self.begin()

        self.sensitivity_requested.connect(start)

        def override(layer: int, parts: str) -> None:
            window.notifications.notice(window.compression_panel.add_override(layer, parts))

        self.override_requested.connect(override)

    # --- state -----------------------------------------------------------------
    def set_model(self, loaded) -> None:
        from core.jobs.loaded_graph import SENSITIVITY, pytorch_refusal
        from core.runtime.runners import is_onnx_runtime

        graph = is_onnx_runtime(loaded.model)
        self.loaded = None if loaded.is_classifier or graph else loaded
        if graph:
            self.status.setText(pytorch_refusal(loaded.source, SENSITIVITY))
        elif self.loaded is None:
            self.status.setText("The map scores next-token predictions: load a causal LM.")
        self.show_stored()
        self._update_buttons()

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        if not busy:
            self._running = False
        self._update_buttons()

    def chosen_probe(self):
        from core.jobs.sensitivity_probes import probe_from_dict
        from core.passes import REGISTRY

        name, options = PROBES[self.probe.currentText()]
        return probe_from_dict({"pass": name, "version": REGISTRY[name].version, **options})

    def request(self) -> SensitivityRequest:
        from core.jobs.sensitivity_probes import LayerProbe

        probe = self.chosen_probe()
        fixed = isinstance(probe, LayerProbe)  # its own columns: the Cells choice is off
        return SensitivityRequest(
            self.loaded,
            probe,
            () if fixed else GRIDS[self.grid.currentText()],
            self.windows.value(),
            self._settings(),
            self.store,
        )

    def show_stored(self) -> None:
        """The grid for the current choices, with the cells stored for them."""
        self.cells = {}
        if self.loaded is None:
            self.map.set_grid([], [], "layer", "")
            return
        from core.jobs.sensitivity import stored_cells

        request = self.request()
        self._new_grid(request)
        stored = stored_cells(request)
        for cell in stored:
            self._add(cell)
        if not self._running:
            total = len(self._rows) * len(self._columns)
            self.status.setText(
                f"{len(stored)} of {total} cells stored for this model, probe and protocol."
                + (" Start measures the rest." if len(stored) < total else "")
            )

    # --- job events --------------------------------------------------------------
    def begin(self) -> None:
        self._running = True
        self.status.setText("Recording the original on the dev windows…")
        self._update_buttons()

    def on_event(self, event) -> None:
        if isinstance(event, SensitivityResumed):
            for cell in event.cells:
                self._add(cell)
            self.status.setText(f"{len(event.cells)} of {event.total} cells read from the store")
        elif isinstance(event, SensitivityCell):
            from core.cli.sensitivity import cell_text  # the CLI's words: no "KL -0.0000"

            self._add(event)
            self.status.setText(
                f"{event.done} of {event.total} cells: layer {event.layer} {event.part}".strip()
                + f", {cell_text(event)}"
            )
        elif isinstance(event, SensitivityMap):
            worst = ", ".join(str(i) for i in event.most_sensitive_layers(3))
            self.status.setText(
                f"Map complete: {len(event.cells)} cells, {len(event.cells) - event.resumed} "
                f"measured in {event.seconds:.0f} s. Most sensitive layers: {worst}.\n"
                f"Protocol: {event.protocol}"  # its text, windows and scoring
            )

    # --- drawing -------------------------------------------------------------------
    def _new_grid(self, request: SensitivityRequest) -> None:
        from core.jobs.sensitivity_probes import columns_of

        layers = request.original.model.config.num_hidden_layers
        self._rows = [str(i) for i in range(layers)]
        self._columns = list(columns_of(request.probe, request.parts))
        self.map.set_grid(
            self._rows,
            [c or "whole layer" for c in self._columns],
            "layer",
            "" if self._columns == [""] else "component",
        )

    def _add(self, cell: SensitivityCell) -> None:
        if cell.part not in self._columns or not 0 <= cell.layer < len(self._rows):
            return  # a cell of another grid
        self.cells[(cell.layer, cell.part)] = cell
        value = METRICS[self.color_by.currentText()](cell)
        self.map.set_cell(cell.layer, self._columns.index(cell.part), value, cell_tip(cell))

    def _redraw(self) -> None:
        self.map.set_scale(self.color_by.currentText())
        for cell in list(self.cells.values()):
            self._add(cell)

    def _start(self) -> None:
        if self.loaded is None:
            return
        self.show_stored()
        self.sensitivity_requested.emit(self.request())

    def _clicked(self, row: int, column: int) -> None:
        probe = self.chosen_probe()
        if not getattr(probe, "has_override", True):  # a pruning probe: nothing to set
            self.status.setText(
                f"Layer {row}: {probe.summary()} has no per-layer override in the compression "
                "panel (that pass applies to every layer); nothing was changed."
            )
            return
        part = self._columns[column]
        self.override_requested.emit(row, COMPONENTS.get(part, part))

    def _update_buttons(self) -> None:
        self.start_button.setEnabled(self.loaded is not None and not self._busy)
        self.cancel_button.setEnabled(self._running and self._busy)
        # the running map's grid stays; with no model to map there is nothing to choose
        for control in (self.probe, self.grid, self.windows):
            control.setEnabled(not self._running and self.loaded is not None)
        if not hasattr(self.chosen_probe(), "scope"):
            self.grid.setEnabled(False)  # one column of its own (mlp, or the whole layer)
