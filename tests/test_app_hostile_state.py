"""The window opens whatever the user's files hold (the GUI sweep of session
14): a runs.jsonl with passes that are not pass objects, a runs.jsonl that is
a folder, hundreds of stored runs, a run whose perplexity is not a number,
a hand-edited settings file; and a run that cannot be stored stays shown."""

from __future__ import annotations

import json
import math
import time

import pytest
from PySide6.QtCore import QSettings

from app.main_window import MainWindow
from app.pareto_chart import LABEL_ALL_UP_TO
from core.evaluate.health import NOT_A_NUMBER
from core.results.store import ResultsStore
from tests.test_app_compression import TINY_SETTINGS, load, run
from tests.test_chart_labels import record
from tests.tiny_models import save_nan_copy


def open_window(qtbot, store_path, settings=None) -> MainWindow:
    w = MainWindow(
        threads=1,
        store=ResultsStore(store_path),
        experiment_settings=TINY_SETTINGS,
        settings=settings,
    )
    qtbot.addWidget(w)
    w.show()
    return w


def write_lines(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def good(i: int = 0, **changes) -> dict:
    data = record(recipe={"passes": [{"pass": "int8_weight_only", "version": 1}]}).to_dict()
    data["metrics"]["decode_ms_per_token"] = 10.0 + i
    data["metrics"]["ppl"] = 20.0 + i / 10
    data["recipe_name"] = f"int8 #{i}"
    data["run_id"] = f"run-{i}"
    return {**data, **changes}


@pytest.mark.parametrize("passes", [[1], ["int8"], [{"bits": 4}], [{"pass": 3}]])
def test_passes_that_are_not_pass_objects_are_skipped(qtbot, tmp_path, passes):
    store = tmp_path / "runs.jsonl"
    write_lines(store, [good(0), good(1, recipe={"format": 1, "passes": passes})])
    w = open_window(qtbot, store)
    assert [r.run_id for r in w.results_table.records] == ["run-0"]
    assert any("1 line(s)" in m for m in w.notifications.messages())


def test_a_store_that_is_a_folder_is_named_and_the_window_opens(qtbot, tmp_path):
    store = tmp_path / "runs.jsonl"
    store.mkdir()
    w = open_window(qtbot, store)
    assert w.isVisible() and not w.results_table.records
    assert any(
        "cannot be read" in m and "not a regular file" in m for m in w.notifications.messages()
    )


def test_hundreds_of_stored_runs_open_at_once_with_a_few_labels(qtbot, tmp_path):
    store = tmp_path / "runs.jsonl"
    write_lines(store, [good(i) for i in range(400)])
    started = time.perf_counter()
    w = open_window(qtbot, store)
    opened_s = time.perf_counter() - started
    assert len(w.results_table.records) == 400 and len(w.pareto_chart.records) == 400
    w.pareto_chart.show_model("m", classifier=False)
    # A label on every point would be 400 TextItems (and 400 more per run added).
    labels = len(w.pareto_chart.labels)
    assert labels <= len(w.pareto_chart.front_records()) + 2 < 400
    assert opened_s < 60  # was 100 s (a redraw per stored run); generous for a busy CI


def test_a_few_runs_are_all_labelled_and_crowded_labels_never_cover_each_other(qtbot, tmp_path):
    store = tmp_path / "runs.jsonl"
    write_lines(store, [good(i * 10) for i in range(3)])  # far apart
    w = open_window(qtbot, store)
    w.pareto_chart.show_model("m", classifier=False)
    assert len(w.pareto_chart.labels) == 3
    crowded = tmp_path / "crowded.jsonl"  # four labels on one spot were unreadable (sweep 14)
    write_lines(crowded, [good(i) for i in range(LABEL_ALL_UP_TO)])
    w = open_window(qtbot, crowded)
    w.pareto_chart.show_model("m", classifier=False)
    labels = w.pareto_chart.labels
    assert 3 <= len(labels) < LABEL_ALL_UP_TO
    boxes = [label.sceneBoundingRect() for label in labels]
    for i, box in enumerate(boxes):
        assert not any(box.intersects(other) for other in boxes[i + 1 :])


@pytest.mark.parametrize(
    ("key", "value"), [("splitters/results", "notbytes"), ("window/geometry", "x")]
)
def test_a_hand_edited_settings_file_is_ignored_with_a_notice(qtbot, tmp_path, key, value):
    settings = QSettings(str(tmp_path / "workbench.ini"), QSettings.Format.IniFormat)
    settings.setValue(key, value)
    settings.sync()
    w = open_window(qtbot, tmp_path / "runs.jsonl", settings)
    assert w.isVisible()
    assert any("not restored" in m for m in w.notifications.messages())


def test_a_model_whose_perplexity_is_not_a_number_is_flagged_and_comes_back(
    qtbot, tmp_path, tiny_llama_dir
):
    nan_model = save_nan_copy(tiny_llama_dir, tmp_path / "nan")
    store = tmp_path / "runs.jsonl"
    w = open_window(qtbot, store)
    load(qtbot, w, nan_model)
    assert any("NaN or infinite" in note for note in w.loaded.description.notes)
    run(qtbot, w)  # the original: nothing to compare it with, its own perplexity is NaN
    [measured] = w.results_table.records
    assert measured.metric("ppl") is None  # not a number: not shown as one
    assert NOT_A_NUMBER in measured.broken and "the loaded model itself" in measured.broken
    assert any("BROKEN" in m for m in w.notifications.messages())
    assert w.pareto_chart.plotted() == []  # nothing to place on the chart
    line = store.read_text()
    assert ": NaN" not in line  # strict JSON: it reads back
    w.close()
    again = open_window(qtbot, store)
    assert [r.run_id for r in again.results_table.records] == [measured.run_id]
    assert again.results_table.records[0].broken == measured.broken
    assert not any("could not be read" in m for m in again.notifications.messages())


def test_a_run_that_cannot_be_stored_stays_shown(qtbot, tmp_path, tiny_llama_dir):
    store = tmp_path / "runs.jsonl"
    w = open_window(qtbot, store)
    load(qtbot, w, tiny_llama_dir)
    store.mkdir()  # the store becomes unwritable after the window opened
    run(qtbot, w)
    assert len(w.results_table.records) == 1
    assert any("could not be stored" in m for m in w.notifications.messages())
    assert math.isfinite(w.results_table.records[0].metric("ppl"))


def test_run_is_greyed_with_the_reason_for_what_the_model_or_runtime_refuses(
    qtbot, tmp_path, tiny_llama_dir
):
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe

    w = open_window(qtbot, tmp_path / "runs.jsonl")
    load(qtbot, w, tiny_llama_dir)
    panel = w.compression_panel
    panel.set_recipe(Recipe((R["prune_layers"](2),)))  # the tiny Llama has 2 layers
    assert not panel.run_button.isEnabled()
    assert "cannot drop 2 of 2 layers" in panel.problem.text()
    assert "Estimated size" in panel.estimate.text()  # the size still follows the sliders
    panel.set_recipe(Recipe((R["int8_weight_only"](),)))
    assert panel.run_button.isEnabled()
    panel.set_backend("ort")  # ONNX export cannot trace PyTorch's int8 layers
    assert not panel.run_button.isEnabled() and "cannot trace" in panel.problem.text()
    panel.set_backend("torch")
    assert panel.run_button.isEnabled() and panel.problem.text() == ""
