"""Create the QApplication and the main window."""

from __future__ import annotations

import sys


def run_window(argv: list[str]) -> int:
    from core.cli.args import ArgumentsError, OneLineParser, thread_count

    # The CLI's parser and thread check: a count of 0, -3 or 4096 reached the
    # window unchecked (-3 failed the load, 4096 hung it; found in session 18).
    parser = OneLineParser(prog="workbench", description="Open the workbench window.")
    parser.add_argument("--model", "-m", default="default", help="model to load at start")
    parser.add_argument("--threads", type=thread_count, default=None, help="CPU threads for torch")
    parser.add_argument(
        "--screenshot",
        metavar="PATH",
        help="save the window as a PNG once the model has loaded, then quit",
    )
    try:
        args = parser.parse_args(argv)
    except ArgumentsError as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2

    # ml_dtypes' extension (imported by onnx) takes about 0.9 s to import and
    # holds the GIL throughout: imported first by an ONNX export or an ONNX
    # Runtime run, it froze the window mid-job (GUI sweep, session 14). Here,
    # before the window exists, there is nothing to freeze.
    import ml_dtypes  # noqa: F401
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from app.window_state import user_settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Compression Workbench")
    # The window restores its size, splitters, tab and last recipe from these.
    window = MainWindow(threads=args.threads, settings=user_settings())
    window.show()
    if args.screenshot:
        from pathlib import Path

        from app.screenshot import save_when_idle

        save_when_idle(window, Path(args.screenshot))
    window.load_model(args.model)
    return app.exec()
