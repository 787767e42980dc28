"""Create the QApplication and the main window."""

from __future__ import annotations

import argparse
import sys


def run_window(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description="Open the workbench window.")
    parser.add_argument("--model", "-m", default="default", help="model to load at start")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Compression Workbench")
    window = MainWindow(threads=args.threads)
    window.resize(1280, 820)
    window.show()
    window.load_model(args.model)
    return app.exec()
