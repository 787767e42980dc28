"""Where to export the chosen run, and in which formats. The target is
checked when the user presses OK (the job checks it again): a folder that
may not be replaced is named in the dialog, which stays open."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
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
}


class ExportDialog(QDialog):
    def __init__(self, recipe_name: str, formats: list[str], start_dir: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.target = QLineEdit(str(start_dir / folder_name(recipe_name)))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.formats = {name: QCheckBox(FORMAT_HELP.get(name, name)) for name in formats}
        for name, box in self.formats.items():
            box.setChecked(name != "onnx")  # ONNX export takes a while: opt in
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
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        row = QHBoxLayout()
        row.addWidget(self.target, 1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Export <b>{recipe_name}</b> into a new folder:"))
        layout.addLayout(row)
        for box in self.formats.values():
            layout.addWidget(box)
        layout.addWidget(self.overwrite)
        layout.addWidget(self.problem)
        layout.addWidget(
            QLabel("The folder appears only when every format is written and checked.")
        )
        layout.addWidget(buttons)

    def chosen(self) -> tuple[Path, list[str], bool]:
        formats = [name for name, box in self.formats.items() if box.isChecked()]
        return Path(self.target.text()).expanduser(), formats, self.overwrite.isChecked()

    def accept(self) -> None:
        from core.errors import WorkbenchError
        from core.export.marker import check_export_target

        target, _, overwrite = self.chosen()
        try:
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
