"""While a job runs, it shares the GIL with the GUI thread every half
millisecond and the garbage collector leaves the objects made before it
alone (app.worker.enter_job_mode; why in its comment); Python's defaults are
back once the job ends, however it ends."""

from __future__ import annotations

import gc
import sys

import pytest

from app.worker import GIL_SWITCH_INTERVAL_S, JobRunner
from core.errors import WorkbenchError


def run_job(qtbot, job) -> list[tuple[float, bool]]:
    runner = JobRunner()
    seen = []

    def wrapped(progress, cancel):
        seen.append((sys.getswitchinterval(), gc.get_freeze_count() > 0))
        return job(progress, cancel)

    with qtbot.waitSignal(runner.finished, timeout=10_000):
        assert runner.start("job", wrapped)
    return seen


def ok(progress, cancel):
    return ["event"]


def fails(progress, cancel):
    raise WorkbenchError("bad input")


@pytest.mark.parametrize("job", [ok, fails])
def test_job_mode_while_a_job_runs_and_defaults_after(qtbot, job):
    before = sys.getswitchinterval()
    assert before > GIL_SWITCH_INTERVAL_S  # Python's default (5 ms) is what it shortens
    assert gc.get_freeze_count() == 0
    seen = run_job(qtbot, job)
    assert seen == [(GIL_SWITCH_INTERVAL_S, True)]  # short interval, the heap frozen
    assert sys.getswitchinterval() == before
    assert gc.get_freeze_count() == 0


def test_defaults_are_back_when_the_job_ends_without_an_event_loop():
    """A window closed mid-job (shutdown waits for the thread; no slot runs)."""
    before = sys.getswitchinterval()
    runner = JobRunner()
    assert runner.start("job", ok)
    runner.shutdown()
    assert sys.getswitchinterval() == before
    assert gc.get_freeze_count() == 0
