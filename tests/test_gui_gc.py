"""While a window is open, Python's cyclic collector runs only in the GUI
thread (app/gui_gc.py): automatic collection is off, a GUI-thread timer
collects, and closing the last window collects what is left and turns
automatic collection back on."""

from __future__ import annotations

import gc
import threading

from app import gui_gc
from app.main_window import MainWindow


class _Cycle:
    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        _Cycle.collected_in.append(threading.current_thread().name)


def test_a_window_moves_collection_to_the_gui_thread_and_gives_it_back(qtbot):
    assert gc.isenabled() and not gui_gc.collecting_in_gui_thread()
    first, second = MainWindow(threads=1), MainWindow(threads=1)
    assert not gc.isenabled() and gui_gc.collecting_in_gui_thread()
    first.close()
    assert not gc.isenabled()  # one window still open
    _Cycle.collected_in = []

    def make_garbage() -> None:  # a job's thread allocating far past the thresholds
        _Cycle()
        for _ in range(50_000):
            garbage = [[]]  # noqa: F841 (allocations are the point)

    worker = threading.Thread(target=make_garbage, name="job")
    worker.start()
    worker.join()
    assert _Cycle.collected_in == []  # nothing collected in the job's thread
    qtbot.waitUntil(lambda: bool(_Cycle.collected_in), timeout=5_000)  # the timer collects
    assert _Cycle.collected_in == [threading.main_thread().name]
    second.close()
    assert gc.isenabled() and not gui_gc.collecting_in_gui_thread()


def test_while_a_job_runs_the_gui_thread_leaves_full_collections_for_later(qtbot, monkeypatch):
    window = MainWindow(threads=1)
    collected: list[int] = []
    monkeypatch.setattr(gc, "get_count", lambda: (10_000, 10_000, 10_000))  # all past threshold
    monkeypatch.setattr(gc, "collect", lambda generation=2: collected.append(generation) or 0)
    gui_gc.job_started()
    gui_gc._collector.check()
    assert collected == [0, 1]
    gui_gc.job_ended()
    gui_gc._collector.check()
    assert collected == [0, 1, 0, 1, 2]
    monkeypatch.undo()
    window.close()
    assert gc.isenabled()
