"""The compression workflow in the window: sliders, estimate, run, results,
Pareto chart, restore, persistence, cancel."""

import pytest
from PySide6.QtCore import Qt

from app.main_window import MainWindow
from app.results_table import COLUMNS
from core.evaluate.perplexity import PerplexityProtocol
from core.jobs.experiment import ExperimentSettings
from core.measure.speed import BenchSettings
from core.results.store import ResultsStore

TINY_SETTINGS = ExperimentSettings(
    bench=BenchSettings(prompt_tokens=16, new_tokens=8, warmup=1, min_repeats=2, min_time_s=0),
    perplexity=PerplexityProtocol(context_tokens=64, stride=32, quick_windows=3, source="pydoc"),
    calibration_windows=4,
    calibration_length=64,
    text_source="pydoc",
)


def make_window(qtbot, tmp_path, settings=TINY_SETTINGS):
    w = MainWindow(
        threads=1, store=ResultsStore(tmp_path / "runs.jsonl"), experiment_settings=settings
    )
    qtbot.addWidget(w)
    w.show()
    return w


def load(qtbot, window, folder):
    window.model_panel.source_kind.setCurrentIndex(1)
    window.model_panel.location.setText(str(folder))
    with qtbot.waitSignal(window.runner.finished, timeout=60_000):
        qtbot.mouseClick(window.model_panel.load_button, Qt.MouseButton.LeftButton)


def run(qtbot, window):
    with qtbot.waitSignal(window.runner.finished, timeout=120_000):
        qtbot.mouseClick(window.compression_panel.run_button, Qt.MouseButton.LeftButton)


def test_slider_changes_the_estimate(window):
    panel = window.compression_panel
    before = panel.estimate.text()
    panel.groups["int4_weight_only"].setChecked(True)
    after_int4 = panel.estimate.text()
    assert after_int4 != before and "Estimated size" in after_int4
    panel.groups["int4_weight_only"].setChecked(False)
    mlp = panel.groups["prune_mlp"]
    mlp.setChecked(True)
    first = panel.estimate.text()
    mlp.controls["fraction"].set_value(0.5)
    assert panel.estimate.text() != first


def test_two_quantizations_need_their_own_layers(window):
    panel = window.compression_panel
    int8, int4 = panel.groups["int8_weight_only"], panel.groups["int4_weight_only"]
    int8.setChecked(True)
    int4.setChecked(True)
    assert not panel.run_button.isEnabled()
    assert "give each its own layers" in panel.problem.text()
    int8.controls["layers"].setText("0")
    int4.controls["layers"].setText("1-")  # half typed: refused with the reason, no crash
    assert not panel.run_button.isEnabled() and "layers" in panel.problem.text()
    int4.controls["layers"].setText("1")
    assert panel.run_button.isEnabled() and panel.problem.text() == ""
    recipe = panel.recipe()
    assert [p.to_dict().get("layers") for p in recipe.passes] == ["0", "1"]
    panel.set_recipe(recipe)  # a scoped recipe comes back into the controls
    assert int4.controls["layers"].text() == "1"


def test_run_fills_charts_table_pareto_and_restores(qtbot, window, tmp_path):
    run(qtbot, window)  # the original
    panel = window.compression_panel
    panel.groups["prune_mlp"].setChecked(True)
    panel.groups["prune_mlp"].controls["fraction"].set_value(0.5)
    run(qtbot, window)
    assert window.results_table.rowCount() == 2
    assert len(window.pareto_chart.plotted()) == 2
    assert window.bench_chart.series.size > 0
    assert not window.export_button.isEnabled()  # no run selected yet
    heading = window.live_view.heading.text()
    assert "prune" in heading and "on torch, cpu, 1 threads" in heading  # which run, where
    window.tabs.setCurrentWidget(window.live_view)  # charts draw while they are shown
    qtbot.waitUntil(lambda: window.perplexity_chart.points_drawn() > 0, timeout=3000)
    record = window.results_table.records[1]
    # The band is the interval as computed (asymmetric), the one the table shows.
    low, high = record.metric("ppl_ci95_low"), record.metric("ppl_ci95_high")
    assert 0 < low < record.metric("ppl") < high
    assert window.perplexity_chart.low.y[-1] == pytest.approx(low)
    assert window.perplexity_chart.high.y[-1] == pytest.approx(high)
    assert f"({low:.2f}–{high:.2f})" in window.results_table.item(1, PPL_COLUMN).text()
    assert record.recipe["passes"][0]["pass"] == "prune_mlp"
    assert record.bytes < window.results_table.records[0].bytes

    panel.groups["prune_mlp"].setChecked(False)
    window.results_table.selectRow(1)
    assert panel.groups["prune_mlp"].isChecked()
    assert panel.groups["prune_mlp"].controls["fraction"].value() == 0.5
    assert window.export_button.isEnabled() and window.export_action.isEnabled()

    # Persisted as measured: a new window on the same store shows both runs.
    again = make_window(qtbot, tmp_path)
    assert again.results_table.rowCount() == 2
    again.close()


def test_cancel_stops_a_long_run_within_a_second(qtbot, tmp_path, tiny_llama_dir):
    slow = ExperimentSettings(
        bench=BenchSettings(
            prompt_tokens=16,
            new_tokens=200,
            warmup=0,
            min_repeats=1000,
            min_time_s=600,
            max_repeats=1000,
        ),
        evaluate=False,
    )
    w = make_window(qtbot, tmp_path, slow)
    load(qtbot, w, tiny_llama_dir)
    qtbot.mouseClick(w.compression_panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.bench_chart.series.size > 20, timeout=20_000)
    with qtbot.waitSignal(w.runner.finished, timeout=1000):
        qtbot.mouseClick(w.cancel_button, Qt.MouseButton.LeftButton)
    assert w.results_table.rowCount() == 0
    assert any("cancelled" in m for m in w.notifications.messages())
    w.close()


PPL_COLUMN = [name for name, _ in COLUMNS].index("Perplexity")


def test_perplexity_band_is_cleared_with_the_chart(qtbot):
    from app.perplexity_chart import PerplexityChart

    chart = PerplexityChart()
    qtbot.addWidget(chart)
    chart.show()
    for i in range(1, 5):
        chart.add_point(i, 20.0 + i, *((15.0 + i, 40.0 + i) if i > 1 else (None, None)))
    qtbot.waitUntil(lambda: chart.points_drawn() == 4, timeout=3000)
    assert chart.band.isVisible()
    chart.clear_points()
    qtbot.waitUntil(lambda: chart.points_drawn() == 0, timeout=3000)
    assert not chart.band.isVisible()


def test_moving_a_slider_during_a_run_keeps_run_disabled(window, qtbot):
    """The panel alone owns Run's enabled state: a job running keeps it off."""
    panel = window.compression_panel
    assert panel.run_button.isEnabled()
    panel.set_busy(True)
    group = next(iter(panel.groups.values()))
    group.setChecked(not group.isChecked())  # a slider moved: the panel refreshes
    assert not panel.run_button.isEnabled()
    group.setChecked(not group.isChecked())
    panel.set_busy(False)
    assert panel.run_button.isEnabled()


def test_the_demo_says_what_the_configuration_measured(qtbot, window):
    """A collapsed configuration was shown side by side without a word
    (sweep ten): the demo now names its latest run's quality, or its absence."""
    from dataclasses import replace

    panel = window.compression_panel
    panel.groups["prune_mlp"].setChecked(True)
    recipe = panel.recipe()
    said = window._measured_quality(recipe, "torch")
    assert said.startswith("Its quality is not measured yet")
    run(qtbot, window)
    assert window._measured_quality(recipe, "torch").startswith("Measured: top-1 agreement")
    assert window._measured_quality(recipe, "ort").startswith("Its quality is not measured")
    record = window.results_table.records[-1]
    window._show_record(replace(record, broken="collapsed: top-1 agreement 0.30 < 0.5"))
    said = window._measured_quality(recipe, "torch")
    assert said.startswith("Measured BROKEN: collapsed")
    window.demo_panel.begin("prune_mlp", said)
    assert "BROKEN" in window.demo_panel.recipe_label.text()
