"""Choose a model (embedded default, local folder, hub id) and see what it is."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from app.sizes import size_text
from core.models.description import ModelDescription

SOURCES = [
    ("Embedded default (SmolLM2-135M-Instruct)", "default"),
    ("Local folder", "folder"),
    ("Hugging Face id", "hub"),
    ("Demo classifier (MiniLM, film-review sentiment)", "demo-classifier"),
]
# Sources that name a model by themselves (no path or id to type).
NAMED = {"default", "demo-classifier"}


class ModelPanel(QGroupBox):
    load_requested = Signal(str)
    prepare_requested = Signal()  # fine-tune and cache the demo classifier

    def __init__(self, parent=None) -> None:
        super().__init__("Model", parent)
        self.source_kind = QComboBox()
        for label, key in SOURCES:
            self.source_kind.addItem(label, key)
        self.location = QLineEdit()
        self.location.setPlaceholderText("folder path or org/name")
        self.browse = QPushButton("Browse…")
        self.load_button = QPushButton("Load")
        self.load_button.setDefault(True)
        self.prepare_button = QPushButton("Prepare the demo classifier (fine-tune, ~10-25 min)")
        self.prepare_button.setToolTip(
            "Fine-tunes the bundled MiniLM encoder on the sentiment training films (cancellable), "
            "caches it, then loads it; needed once per machine"
        )

        row = QHBoxLayout()
        row.addWidget(self.location, 1)
        row.addWidget(self.browse)

        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, label in [
            ("source", "Source"),
            ("architecture", "Architecture"),
            ("shape", "Layers · hidden · heads"),
            ("parameters", "Parameters"),
            ("memory", "In memory"),
            ("disk", "On disk"),
            ("device", "Device"),
        ]:
            value = QLabel("–")
            value.setWordWrap(True)
            self.fields[key] = value
            form.addRow(label, value)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8a6d00;")

        layout = QVBoxLayout(self)
        layout.addWidget(self.source_kind)
        layout.addLayout(row)
        layout.addWidget(self.load_button)
        layout.addWidget(self.prepare_button)
        layout.addLayout(form)
        layout.addWidget(self.note)
        layout.addStretch(1)

        self.source_kind.currentIndexChanged.connect(self._on_kind_changed)
        self.browse.clicked.connect(self._browse)
        self.load_button.clicked.connect(self._request_load)
        self.prepare_button.clicked.connect(self.prepare_requested)
        self.location.returnPressed.connect(self._request_load)
        self._on_kind_changed()

    def source(self) -> str:
        if self.source_kind.currentData() in NAMED:
            return self.source_kind.currentData()
        return self.location.text().strip()

    def load_folder(self, folder: str) -> None:
        """Load a local folder as if typed here and Load pressed (File > Open)."""
        self.source_kind.setCurrentIndex(self.source_kind.findData("folder"))
        self.location.setText(folder)
        self._request_load()

    def set_busy(self, busy: bool) -> None:
        self.load_button.setEnabled(not busy)
        self.prepare_button.setEnabled(not busy)

    def show_description(self, d: ModelDescription) -> None:
        dtypes = _dtype_text(d.bytes_by_dtype)
        arch = d.architecture  # a graph's reads "LlamaForCausalLM (ONNX Runtime)"
        kind = f"{arch[:-1]}, {d.model_type})" if arch.endswith(")") else f"{arch} ({d.model_type})"
        self.fields["architecture"].setText(kind)
        self._show_source(str(d.source))
        self.fields["shape"].setText(
            f"{d.layers} · {d.hidden_size} · {d.attention_heads} ({d.kv_heads} kv)"
        )
        self.fields["parameters"].setText(f"{d.parameters:,}")
        self.fields["memory"].setText(dtypes)
        self.fields["disk"].setText(size_text(d.bytes_on_disk))
        self.fields["device"].setText(d.device)
        self.note.setText("\n".join(d.notes))

    def _show_source(self, source: str) -> None:
        """The source elided in the middle, whole in the tooltip: a long path
        in the box's title widened the column past its fixed width."""
        label = self.fields["source"]
        label.setToolTip(source)
        label.setText(label.fontMetrics().elidedText(source, Qt.TextElideMode.ElideMiddle, 260))

    def _on_kind_changed(self) -> None:
        kind = self.source_kind.currentData()
        self.location.setEnabled(kind not in NAMED)
        self.prepare_button.setVisible(kind == "demo-classifier")
        self.browse.setEnabled(kind == "folder")
        self.location.setPlaceholderText(
            {"folder": "/path/to/model folder", "hub": "org/name"}.get(kind, "")
        )

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder")
        if folder:
            self.location.setText(folder)

    def _request_load(self) -> None:
        self.load_requested.emit(self.source())


def _dtype_text(by_dtype: dict[str, int]) -> str:
    """Bytes by dtype, largest first; types under 1% of the whole go together
    (a graph's int64 shapes and bool masks read "int64 <0.001 MB, bool ...")."""
    total = sum(by_dtype.values()) or 1
    ordered = sorted(by_dtype.items(), key=lambda item: -item[1])
    shown = [(k, v) for k, v in ordered if v >= total / 100]
    rest = sum(v for k, v in ordered if v < total / 100)
    parts = [f"{k} {size_text(v)}" for k, v in shown]
    if rest:
        parts.append(f"other {size_text(rest)}")
    return ", ".join(parts)
