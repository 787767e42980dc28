"""One worker type that runs a core job off the GUI thread.

A job is ``fn(progress, cancel)`` returning an iterable of plain dataclass
events (or None). The worker runs it on a QThread and re-emits each event,
each progress step and the outcome as signals; Qt queues them to the GUI
thread, so only GUI-thread slots touch widgets. Cancel sets the job's
CancelToken, which core jobs check inside their inner loops.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable

from PySide6.QtCore import QObject, QThread, Signal

from app import gui_gc
from core.errors import Cancelled, WorkbenchError
from core.progress import CancelToken, Progress

Job = Callable[[Callable[[Progress], None], CancelToken], Iterable | None]

# Niceness of a job's thread. On Linux niceness is per thread and the compute
# threads torch starts from it (its OpenMP team) inherit it, so the GUI
# thread wins a core the moment it wakes; the job loses only the moments the
# GUI really uses. Qt's QThread.setPriority is ignored on Linux, hence os.
# Measured (benchmarks/gui_responsiveness.py): without it, with cheap redraws,
# the GUI thread still waited up to 50 ms for a core behind the model's.
JOB_NICENESS = 10

# How long a thread may hold the GIL while another waits for it (Python's
# default is 5 ms). Niceness gives the GUI thread a core, not the GIL: every
# call from Qt back into Python (a paint, a signal to a Python slot) needs it
# again, and a redraw makes dozens of such calls, each waiting up to the full
# interval behind the job's Python code. Measured with
# benchmarks/gui_responsiveness.py --during search (2-core CPU, quiet): worst
# tick gap 317-369 ms at 5 ms (a Pareto redraw that takes 15 ms idle took
# 146 ms), 40.5 ms at 0.5 ms.
GIL_SWITCH_INTERVAL_S = 0.0005
_DEFAULT_SWITCH_INTERVAL_S = sys.getswitchinterval()


def enter_job_mode() -> None:
    """While a job runs: the GUI thread gets the GIL back within half a
    millisecond, and the cyclic garbage collector leaves alone every object
    that existed before the job (gc.freeze). A full collection walks the whole
    heap (torch, transformers, Qt, the loaded model: 250-360 ms here) with
    the GIL held, which froze the window whenever a job that builds models
    (a search's candidates) triggered one; frozen, it walks only what the job
    made."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.freeze()
    gui_gc.job_started()


def leave_job_mode() -> None:
    """Back to Python's defaults; what was frozen is collectable again."""
    sys.setswitchinterval(_DEFAULT_SWITCH_INTERVAL_S)
    gc.unfreeze()
    gui_gc.job_ended()


def lower_this_threads_priority() -> None:
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)
        except OSError:  # not permitted in some sandboxes: run at normal priority
            pass


class _JobThread(QThread):
    event = Signal(object)
    progress = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, job: Job, cancel: CancelToken, parent=None) -> None:
        super().__init__(parent)
        self._job = job
        self._cancel = cancel

    def run(self) -> None:
        lower_this_threads_priority()
        try:
            events = self._job(self.progress.emit, self._cancel)
            for event in events or ():
                self.event.emit(event)
            if self._cancel.cancelled:
                self.cancelled.emit()
        except Cancelled:
            self.cancelled.emit()
        except (WorkbenchError, ValueError) as err:
            self.failed.emit(str(err))
        except MemoryError:
            self.failed.emit("Out of memory: close other programs or use a smaller model.")
        except Exception as err:  # a bug: keep the window alive and say what happened
            traceback.print_exc()
            name = "Out of memory" if "OutOfMemory" in type(err).__name__ else type(err).__name__
            self.failed.emit(f"{name}: {err}".splitlines()[0][:400])
        finally:
            # Here, not in the GUI thread's finished slot: the defaults come
            # back when the job ends even if no event loop runs to deliver
            # that slot (a window closed mid-job, a test that moved on).
            leave_job_mode()


class JobRunner(QObject):
    """Starts, cancels and reports one job at a time."""

    event = Signal(object)  # each dataclass the job yields
    progress = Signal(object)  # core.jobs.Progress
    failed = Signal(str, str)  # job name, message
    cancelled = Signal(str)  # job name
    finished = Signal(str)  # job name, after failed/cancelled/success
    busy_changed = Signal(bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._thread: _JobThread | None = None
        self._cancel: CancelToken | None = None
        self._name = ""

    @property
    def busy(self) -> bool:
        return self._thread is not None

    @property
    def job_name(self) -> str:
        return self._name

    def start(self, name: str, job: Job) -> bool:
        """Run ``job``; refused (False) while another job runs."""
        if self._thread is not None:
            return False
        self._name = name
        self._cancel = CancelToken()
        thread = _JobThread(job, self._cancel, self)
        thread.event.connect(self.event)
        thread.progress.connect(self.progress)
        thread.failed.connect(lambda message: self.failed.emit(name, message))
        thread.cancelled.connect(lambda: self.cancelled.emit(name))
        thread.finished.connect(self._on_thread_finished)
        self._thread = thread
        self.busy_changed.emit(True)
        enter_job_mode()
        thread.start()
        return True

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Cancel and wait for the thread: called when the window closes."""
        if self._thread is not None:
            self.cancel()
            self._thread.wait(timeout_ms)

    def _on_thread_finished(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.deleteLater()
        name = self._name
        self.busy_changed.emit(False)
        self.finished.emit(name)
