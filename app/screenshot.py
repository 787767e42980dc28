"""`workbench --screenshot PATH`: open the window, wait for the start-up job
(loading the model) to end, save the window as a PNG and quit. The desktop
bundle's smoke test (packaging/smoke.sh) proves with it that the frozen
window draws; the exit status says whether a model loaded."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

SETTLE_MS = 500  # after the job ends, let the panels draw what it brought
TIMEOUT_S = 900  # converting the default model on a slow machine takes minutes


def save_when_idle(
    window, path: Path, timeout_s: float = TIMEOUT_S, done: Callable[[int], None] | None = None
) -> None:
    """Once ``window.runner`` has run a job and gone idle, save the window to
    ``path`` and call ``done`` (default: end the application's event loop)
    with 0 when ``window.loaded`` is set; 1 when the job failed, the PNG could
    not be written, or ``timeout_s`` passed first."""
    done = done or QApplication.instance().exit
    # Timers belong to the window, so none fires after it is gone.
    deadline = QTimer(window)
    deadline.setSingleShot(True)

    def shoot() -> None:
        deadline.stop()
        ok = window.grab().save(str(path), "PNG")
        if not ok:
            print(f"error: could not write the screenshot {path}", file=sys.stderr)
        elif window.loaded is None:
            print("error: the window opened but no model loaded", file=sys.stderr)
        done(0 if ok and window.loaded is not None else 1)

    def on_busy(busy: bool) -> None:
        if not busy and deadline.isActive():
            QTimer.singleShot(SETTLE_MS, window, shoot)

    def give_up() -> None:
        print(f"error: the model did not load within {timeout_s:g} s", file=sys.stderr)
        done(1)

    deadline.timeout.connect(give_up)
    window.runner.busy_changed.connect(on_busy)
    deadline.start(int(timeout_s * 1000))
