"""The classifier as a model kind in the window: a run charts latency and
accuracy live, the record lands on classifier axes, generation says no."""

from PySide6.QtCore import Qt

from app.main_window import MainWindow
from core.results.store import ResultsStore
from tests.test_app_compression import load
from tests.test_classifier_experiment import TINY


def test_classifier_run_charts_accuracy_and_plots_on_classifier_axes(
    qtbot, tmp_path, tiny_classifier_dir
):
    window = MainWindow(
        threads=1, store=ResultsStore(tmp_path / "r.jsonl"), experiment_settings=TINY
    )
    qtbot.addWidget(window)
    load(qtbot, window, tiny_classifier_dir)
    assert window.pareto_chart.y_axis.currentText().startswith("Classifier error")
    window.compression_panel.groups["int8_dynamic"].setChecked(True)
    with qtbot.waitSignal(window.runner.finished, timeout=120_000):
        qtbot.mouseClick(window.compression_panel.run_button, Qt.MouseButton.LeftButton)
    record = window.results_table.records[-1]
    assert record.metrics.accuracy is not None and record.metrics.latency_ms is not None
    assert window.live_view.accuracy.series.size > 0
    assert window.live_view.latency.series.size > 0
    assert [r for r, _, _ in window.pareto_chart.plotted()] == [record]

    assert not window.generate_panel.generate_button.isEnabled()  # greyed with the reason
    assert "sequence classifier" in window.generate_panel.view.speed.text()
    assert not window.serve_panel.start_button.isEnabled()
    assert "serving needs a causal" in window.serve_panel.status.text()
    window.close()


def test_work_a_classifier_cannot_take_is_greyed_with_the_jobs_reason(
    qtbot, tmp_path, tiny_classifier_dir
):
    """Run, Distil and Side by side were enabled and failed once started
    (sweep ten): the passes' own glance at the modules and the jobs' own
    refusals now grey them, with the line the job would have said."""
    window = MainWindow(
        threads=1, store=ResultsStore(tmp_path / "r.jsonl"), experiment_settings=TINY
    )
    qtbot.addWidget(window)
    load(qtbot, window, tiny_classifier_dir)
    panel = window.compression_panel
    panel.groups["int8_head"].setChecked(True)
    assert not panel.run_button.isEnabled() and "no linear output head" in panel.problem.text()
    panel.groups["int8_head"].setChecked(False)
    panel.groups["prune_mlp"].setChecked(True)  # heal follows a structured pruning
    panel.groups["heal"].setChecked(True)
    assert not panel.run_button.isEnabled() and "no language-model" in panel.problem.text()
    panel.groups["heal"].setChecked(False)
    panel.groups["prune_mlp"].setChecked(False)
    assert panel.run_button.isEnabled()
    assert not window.distill_panel.run_button.isEnabled()
    assert "sequence classifier" in window.distill_panel.status.text()
    assert not window.demo_panel.run_button.isEnabled()
    assert "sequence classifier" in window.demo_panel.recipe_label.text()
    window.close()
