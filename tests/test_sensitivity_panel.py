"""The Sensitivity tab: the heatmap fills live from the job on the window's
worker, a cancelled map resumes with only the missing cells, the stored map
shows when the model is loaded again, hovering names a cell's numbers and
clicking a cell gives that layer int8 in the compression panel."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt

from core.jobs.sensitivity import SensitivityCell, SensitivityResumed
from tests.test_app_compression import load, make_window


def choose(panel, probe="int8 weight-only", grid="Attention / MLP", windows=1):
    panel.probe.setCurrentText(probe)
    panel.grid.setCurrentText(grid)
    panel.windows.setValue(windows)


def start(qtbot, window, on_event=None):
    events = []

    def seen(event):
        events.append(event)
        if on_event:
            on_event(event)

    window.runner.event.connect(seen)
    panel = window.sensitivity_panel
    with qtbot.waitSignal(window.runner.finished, timeout=120_000):
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    window.runner.event.disconnect(seen)
    return events


def test_the_map_fills_live_then_resumes_after_a_cancel(qtbot, window):
    panel = window.sensitivity_panel
    window.tabs.setCurrentWidget(panel)
    choose(panel)
    assert panel.map.measured() == 0 and panel.start_button.isEnabled()
    filled = []

    def cancel_after_the_first(event):
        if isinstance(event, SensitivityCell):
            filled.append(panel.map.measured())  # drawn as it arrives, before the next
            window.runner.cancel()

    first = start(qtbot, window, cancel_after_the_first)
    # On a loaded machine the worker may finish the next cell before the GUI
    # thread handles the first one's event and cancels: kept, and resumed.
    kept = sum(isinstance(e, SensitivityCell) for e in first)
    assert 1 <= kept < 4 and filled[0] == 1
    assert panel.map.measured() == kept and "cancelled" in window.stage.text()
    second = start(qtbot, window)
    assert isinstance(second[0], SensitivityResumed) and len(second[0].cells) == kept
    assert sum(isinstance(e, SensitivityCell) for e in second) == 4 - kept  # only the missing
    assert panel.map.measured() == 4 and "Map complete" in panel.status.text()
    assert "Protocol: KL over" in panel.status.text()  # its text and windows, not only a map
    assert not panel.grab().isNull()  # paints (a control named like a QWidget method crashed it)
    tip = panel.map.hover_at(QPointF(1.5, 1.5))  # column 1 (mlp), row 1 (layer 1)
    cell = panel.cells[(1, "mlp")]
    assert tip.startswith("layer 1, mlp") and f"{cell.mean_kl:.5f}" in tip
    assert f"{(cell.ppl_ratio - 1) * 100:+.2f}%" in tip
    kl = panel.map.values.copy()
    panel.color_by.setCurrentText("Perplexity change (%)")
    assert panel.map.values[1, 1] == (cell.ppl_ratio - 1) * 100 and (panel.map.values != kl).any()


def test_the_stored_map_shows_when_the_model_is_loaded_again(qtbot, window, tiny_llama_dir):
    panel = window.sensitivity_panel
    choose(panel)
    start(qtbot, window)
    assert panel.map.measured() == 4
    again = make_window(qtbot, window.store.path.parent)  # same folder: same stores
    choose(again.sensitivity_panel)
    load(qtbot, again, tiny_llama_dir)
    assert again.sensitivity_panel.map.measured() == 4
    assert "4 of 4 cells stored" in again.sensitivity_panel.status.text()
    choose(again.sensitivity_panel, probe="int4 g128 RTN")  # another probe: its own map
    assert again.sensitivity_panel.map.measured() == 0
    again.close()


def test_clicking_a_cell_sets_that_layers_override(qtbot, window):
    panel, compression = window.sensitivity_panel, window.compression_panel
    window.tabs.setCurrentWidget(panel)
    compression.groups["int4_weight_only"].setChecked(True)  # int4 everywhere so far
    choose(panel)
    start(qtbot, window)
    image = panel.map.image
    at = panel.map.plot.mapFromScene(image.mapToScene(QPointF(0.5, 1.5)))  # layer 1, attention
    qtbot.mouseClick(panel.map.plot.viewport(), Qt.MouseButton.LeftButton, pos=at)
    int8, int4 = compression.groups["int8_weight_only"], compression.groups["int4_weight_only"]
    assert int8.isChecked() and int8.controls["layers"].text() == "1"
    assert int8.controls["parts"].text() == "q,k,v,o,qkv"
    assert int4.controls["layers"].text() == "0"  # int4 leaves layer 1
    assert compression.problem.text() == ""  # a recipe that can run
    recipe = compression.recipe()
    assert [p.name for p in recipe.passes] == ["int8_weight_only", "int4_weight_only"]
    assert "layer 1 (q,k,v,o,qkv): int8 weight-only" in window.notifications.messages()[0]
    panel.map.cell_clicked.emit(0, 1)  # layer 0, mlp: int4 is left with no layer
    assert int8.controls["layers"].text() == ""  # every layer
    assert int8.controls["parts"].text() == "q,k,v,o,qkv,gate,up,down,gate_up"
    assert not int4.isChecked() and compression.problem.text() == ""
    assert [p.name for p in compression.recipe().passes] == ["int8_weight_only"]
