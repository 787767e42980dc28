"""Where to export the chosen run, and in which formats. The target is
checked when the user presses OK (the job checks it again): a folder that
may not be replaced is named in the dialog, which stays open."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from core.export.naming import folder_name

FORMAT_HELP = {
    "hf": "Hugging Face folder (safetensors, config, tokenizer, recipe, environment)",
    "report": "Report for stakeholders (self-contained HTML with charts, and JSON)",
    "onnx": "ONNX model with a KV cache, checked against PyTorch in ONNX Runtime",
    "gguf": "GGUF for llama.cpp and Ollama (tokenizer and chat template included), read back "
    "and checked against the weights",
}
# The GGUF type of the weight matrices (core.export.gguf_encode.TYPES), with what each keeps.
GGUF_TYPES = {
    "q8_0": "Q8_0 (8-bit; int8 weights keep their values)",
    "q4_1": "Q4_1 (4-bit with minimum; int4 weights keep their values)",
    "q4_0": "Q4_0 (4-bit symmetric)",
    "f16": "F16",
    "bf16": "BF16",
}
OPT_IN = ("onnx", "gguf")  # formats that take a while are left unchecked


class ExportDialog(QDialog):
    def __init__(self, recipe_name: str, formats: list[str], start_dir: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.target = QLineEdit(str(start_dir / folder_name(recipe_name)))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        ordered = sorted(formats, key=lambda name: name in OPT_IN)  # quick ones first
        self.formats = {name: QCheckBox(FORMAT_HELP.get(name, name)) for name in ordered}
        for name, box in self.formats.items():
            box.setChecked(name not in OPT_IN)
        self.gguf_types = QComboBox()
        for name, label in GGUF_TYPES.items():
            self.gguf_types.addItem(label, name)
        self.gguf_types.setToolTip("The GGUF type of the weight matrices; norms stay F32")
        self.overwrite = QCheckBox("Replace the folder if it is an earlier export")
        self.overwrite.setToolTip(
            "Only a folder the workbench exported (it carries .workbench-export.json and "
            "nothing else was added) or an empty folder is replaced. Any other folder, a "
            "file or a link is refused and left untouched."
        )
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020")
        self.problem.hide()
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        row = QHBoxLayout()
        row.addWidget(self.target, 1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        heading = QLabel(f"Export <b>{html.escape(recipe_name)}</b> into a new folder:")
        heading.setWordWrap(True)
        layout.addWidget(heading)
        layout.addLayout(row)
        for name, box in self.formats.items():
            layout.addWidget(box)
            if name == "gguf":  # its type on a row of its own (beside it, 1,129 px wide)
                gguf_row = QHBoxLayout()
                gguf_row.addSpacing(24)
                gguf_row.addWidget(QLabel("GGUF type"))
                gguf_row.addWidget(self.gguf_types, 1)
                self.gguf_types.setEnabled(box.isChecked())
                box.toggled.connect(self.gguf_types.setEnabled)
                layout.addLayout(gguf_row)
        layout.addWidget(self.overwrite)
        layout.addWidget(self.problem)
        layout.addWidget(
            QLabel("The folder appears only when every format is written and checked.")
        )
        layout.addWidget(buttons)

    def chosen(self) -> tuple[Path, list[str], bool]:
        formats = [name for name, box in self.formats.items() if box.isChecked()]
        return Path(self.target.text()).expanduser(), formats, self.overwrite.isChecked()

    def gguf_type(self) -> str:
        return self.gguf_types.currentData()

    def accept(self) -> None:
        from core.errors import WorkbenchError
        from core.export.marker import check_export_target

        target, _, overwrite = self.chosen()
        try:
            _check_typed_target(self.target.text())
            check_export_target(target, overwrite)
        except WorkbenchError as err:
            self.problem.setText(str(err))
            self.problem.show()
            return
        super().accept()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into")
        if folder:
            self.target.setText(str(Path(folder) / Path(self.target.text()).name))


def _check_typed_target(text: str) -> None:
    """A folder typed by hand: a full path, one line. A relative one would land
    in whatever folder the workbench was started from (the repository, under
    ./run.sh); a newline in a name breaks every listing of it."""
    from core.errors import WorkbenchError

    if not text.strip():
        raise WorkbenchError("Give the folder to export into.")
    if any(not c.isprintable() for c in text):
        raise WorkbenchError("The folder name holds a line break or a control character.")
    if not Path(text).expanduser().is_absolute():
        raise WorkbenchError(
            f"Give the folder as a full path (like {Path.home() / text.strip()}), or choose "
            "one with Browse: a relative path would land where the workbench was started."
        )
