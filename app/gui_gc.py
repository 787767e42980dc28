"""Python's cyclic garbage collector runs only in the GUI thread while a
window is open.

Left automatic, a collection runs in whichever thread happens to allocate
when a threshold is crossed: often a job's thread, which builds models. If
the garbage then holds Qt objects (a closed dialog, a replaced chart), Qt
deletes them from the wrong thread, and the process can crash later. We saw
that as a segfault in the first thread to exit after such a collection (a
compile job's thread), after a few hundred window tests. pyqtgraph's
GarbageCollector is the field's answer (automatic collection off, the same
thresholds checked on a GUI-thread timer), so we use it, counted per window:
the last window to close collects what is left, here, and turns automatic
collection back on.
"""

from __future__ import annotations

import gc

from pyqtgraph.util.garbage_collector import GarbageCollector

CHECK_INTERVAL_S = 0.5  # at most this long between a threshold crossing and its collection

_windows: set[int] = set()
_collector: GarbageCollector | None = None
_job_running = False


class _GuiThreadCollector(GarbageCollector):
    """pyqtgraph's collector, except that while a job runs it leaves the
    oldest generation for later: a full collection walks everything the job
    made (a search's candidate models) with the GUI thread stopped, measured
    at 70.8 ms gaps (benchmarks/gui_responsiveness.py --during search)."""

    def check(self) -> None:
        if not _job_running:
            super().check()
            return
        young, middle, _ = gc.get_count()
        if young > self.threshold[0]:
            gc.collect(0)
            if middle > self.threshold[1]:
                gc.collect(1)


def job_started() -> None:
    global _job_running
    _job_running = True


def job_ended() -> None:
    """Called from the job's thread: only sets the flag the GUI timer reads."""
    global _job_running
    _job_running = False


def hold(window) -> None:
    """``window`` is open: collect in the GUI thread from now on."""
    global _collector
    if _collector is None:
        _collector = _GuiThreadCollector(interval=CHECK_INTERVAL_S)
    _windows.add(id(window))


def release(window) -> None:
    """``window`` closed; the last one gives collection back to Python."""
    _windows.discard(id(window))
    if not _windows:
        _stop()


def release_all() -> None:
    """Every window and widget is gone (a test's teardown): collect their
    garbage here, even where no window held the collector (a panel alone)."""
    _windows.clear()
    _stop()
    gc.collect()


def collecting_in_gui_thread() -> bool:
    return _collector is not None


def _stop() -> None:
    global _collector
    if _collector is None:
        return
    _collector.timer.stop()
    _collector = None
    gc.collect()  # what the closed windows left, collected in this (the GUI) thread
    gc.enable()
