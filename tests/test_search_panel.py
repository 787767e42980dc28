"""The Search panel in the window: Start runs the Search job on the worker,
the log says what was proposed, dropped (why) and measured, the best so far
is shown, every measured run lands in the table, the chart and the store;
Cancel keeps what was measured; a limit the model cannot take is refused."""

import pytest
from PySide6.QtCore import Qt

from core.results.store import ResultsStore
from tests.test_app_compression import make_window


@pytest.fixture(autouse=True)
def proxies_in_this_process(monkeypatch):
    """On a machine with 8 or more CPUs the search would spawn local workers."""
    from core.search import executors

    monkeypatch.setattr(executors, "default_workers", lambda cpus: 1)


def start(qtbot, window, minutes=2.0):
    panel = window.search_panel
    window.tabs.setCurrentWidget(panel)
    panel.minutes.setValue(minutes)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)


def test_start_is_refused_without_a_model(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    assert not window.search_panel.start_button.isEnabled()
    assert not window.search_panel.cancel_button.isEnabled()
    window.close()


def test_a_search_logs_candidates_and_its_runs_join_the_table(qtbot, window):
    panel = window.search_panel
    size, ratio = panel.limit_boxes["max_bytes_ratio"]
    assert size.isChecked() and ratio.value() == 0.35
    before = len(window.results_table.records)
    with qtbot.waitSignal(window.runner.finished, timeout=300_000):
        start(qtbot, window)
    log = panel.log.toPlainText()
    assert "proposed" in log and "dropped" in log and "> limit" in log and "measured" in log
    assert panel.best.text().startswith("Best so far: ")
    assert "Done (" in panel.status.text()
    stored = ResultsStore(window.store.path).load()
    assert len(stored) >= 2  # the original (the yardstick) and at least one candidate
    assert len(window.results_table.records) == before + len(stored)
    assert {r.run_id for r in stored} <= {r.run_id for r in window.pareto_chart.records}
    best_label = panel.best.text().removeprefix("Best so far: ").split(":")[0]
    assert f"best so far: {best_label}" in log
    assert not panel.cancel_button.isEnabled() and panel.start_button.isEnabled()


def test_cancel_keeps_what_was_measured(qtbot, window):
    panel = window.search_panel
    start(qtbot, window)
    assert panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: "original measured" in panel.log.toPlainText(), timeout=120_000)
    with qtbot.waitSignal(window.runner.finished, timeout=120_000):
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert any("cancelled" in m for m in window.notifications.messages())
    stored = ResultsStore(window.store.path).load()
    assert stored and stored[0].is_original  # measured before the cancel: kept and shown
    assert stored[0].run_id in {r.run_id for r in window.results_table.records}


def test_a_limit_the_model_cannot_take_is_refused_in_one_line(qtbot, window):
    check, _ = window.search_panel.limit_boxes["min_accuracy"]
    check.setChecked(True)
    with qtbot.waitSignal(window.runner.finished, timeout=60_000):
        start(qtbot, window)
    errors = [m for m in window.notifications.messages() if "does not measure accuracy" in m]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert not ResultsStore(window.store.path).load()  # refused before measuring anything


def test_the_objective_follows_the_loaded_models_kind(qtbot, tmp_path, tiny_classifier_dir):
    """A classifier has no perplexity: Start with the language models' default
    objective was refused in one line."""
    from tests.test_app_compression import load, make_window

    window = make_window(qtbot, tmp_path)
    load(qtbot, window, tiny_classifier_dir)
    assert window.search_panel.choice().objective == "accuracy"
    window.close()


def test_best_so_far_says_how_it_was_measured():
    """An audit: the window's best named no runtime, threads or busy machine,
    and dropped a perplexity change that was not comparable (the CLI says so)."""
    from app.search_panel import best_detail, best_text
    from core.search.events import BestSoFar
    from tests.test_chart_labels import record

    run = record(backend="ort-int8", threads=1, machine_busy="load 1.9", eval_protocol="news")
    event = BestSoFar("k", "int8", run, 1.0, None, 0.5)
    text = best_text(event)
    assert "(ort-int8 on cpu, 1 threads; BUSY MACHINE)" in text
    assert "perplexity 18.457 (change not comparable)" in text
    assert "quality protocol: news" in best_detail(event)
