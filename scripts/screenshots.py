"""Drive the real window through a few runs on the default model and save
screenshots for the README. Run under a display (e.g. Xvfb):

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshots.py OUT_DIR

Uses a temporary results store so the user's runs are not touched, and no
QSettings (the window restores nothing). The picture of a run flagged broken
is scripts/screenshot_broken.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="workbench-shots-"))

from PySide6.QtCore import QItemSelectionModel, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.main_window import MainWindow  # noqa: E402
from core.passes import REGISTRY as R  # noqa: E402
from core.passes.recipe import Recipe  # noqa: E402

COMPILED = "torch-compile"
RECIPES = [
    Recipe(()),
    (Recipe((R["int8_dynamic"](),)), COMPILED),  # W8A8 through the compiled runner
    Recipe((R["int8_weight_only"](),)),
    Recipe((R["int4_weight_only"](128, "gptq"),)),
    Recipe((R["int4_weight_only"](64, "rtn"),)),
    Recipe((R["prune_layers"](2),)),
    Recipe((R["prune_layers"](2), R["int8_weight_only"]())),
]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv[:1])
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    window.load_model("default")
    queue = list(RECIPES)

    def shoot(name: str) -> None:
        window.grab().save(str(out / name))

    def next_step() -> None:
        if window.runner.busy:
            QTimer.singleShot(300, next_step)
            return
        if queue:
            recipe, backend = queue.pop(0), "torch"
            if isinstance(recipe, tuple):
                recipe, backend = recipe
            window.compression_panel.set_backend(backend)
            window.compression_panel.set_recipe(recipe)
            window.run_configuration(recipe)
            if len(queue) == 1:  # mid-run view of the live charts
                QTimer.singleShot(25_000, lambda: shoot("live_run.png"))
            QTimer.singleShot(300, next_step)
            return
        window.tabs.setCurrentIndex(0)
        table = window.results_table
        table.selectRow(0)  # the original and the int8 weight-only run, compared
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        table.selectionModel().select(table.model().index(2, 0), flags)
        QTimer.singleShot(500, lambda: (shoot("main_window.png"), finish()))

    def when_idle(then) -> None:
        """Call ``then`` once the running job has finished."""
        if window.runner.busy:
            QTimer.singleShot(300, lambda: when_idle(then))
        else:
            QTimer.singleShot(300, then)

    def finish() -> None:
        window.tabs.setCurrentIndex(2)
        window.generate_panel.controls.max_tokens.setValue(48)
        window.generate_panel.generate_button.click()
        when_idle(lambda: (shoot("generate.png"), demo()))

    def demo() -> None:
        window.compression_panel.set_backend("torch")
        window.compression_panel.set_recipe(RECIPES[2])
        window.demo_panel.controls.max_tokens.setValue(40)
        window.demo_panel.run_button.click()
        when_idle(lambda: (shoot("side_by_side.png"), app.quit()))

    QTimer.singleShot(500, next_step)
    app.exec()


if __name__ == "__main__":
    main()
