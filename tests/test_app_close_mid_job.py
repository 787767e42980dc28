"""Closing the window while a job runs: the job is cancelled and the window
closes when it stops, staying responsive meanwhile (it used to wait 10 s in
closeEvent, then Qt aborted the process on the running thread, exit 134);
a second close quits at once."""

from __future__ import annotations

import threading

from tests.test_app_compression import make_window


def _job_that_ignores_cancel(release: threading.Event):
    """Like an ONNX trace: checks no cancel until its step ends."""

    def job(progress, cancel):
        release.wait(30)
        cancel.raise_if_cancelled()
        return []

    return job


def test_a_close_mid_job_waits_for_the_job_then_closes(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    release = threading.Event()
    assert window._start("Exporting to ONNX", _job_that_ignores_cancel(release))
    window.close()
    assert window.isVisible() and window.runner.busy  # not frozen: still open, still working
    assert "Closing once Exporting to ONNX stops" in window.notifications.messages()[0]
    release.set()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert not window.runner.busy


def test_a_second_close_mid_job_quits_at_once(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    quits = []
    window._quit_now = lambda: quits.append(True)
    release = threading.Event()
    assert window._start("Tracing", _job_that_ignores_cancel(release))
    window.close()
    assert quits == []
    window.close()
    assert quits == [True]
    release.set()  # the test's own cleanup: the thread ends, the window closes
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
