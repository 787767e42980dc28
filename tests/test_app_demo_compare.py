"""The window's side-by-side demo, the two-run comparison and the live
throughput and memory charts."""

from PySide6.QtCore import QItemSelectionModel, Qt

from core.passes.recipe import CompressedModel
from tests.test_app_compression import run


def prune_half_the_mlp(window):
    group = window.compression_panel.groups["prune_mlp"]
    group.setChecked(True)
    group.controls["fraction"].set_value(0.5)


def run_demo(qtbot, window):
    events = []
    window.runner.event.connect(events.append)
    window.demo_panel.controls.chat.setChecked(False)
    window.demo_panel.controls.max_tokens.setValue(8)
    # A cold torch.compile on a loaded 2-core CI box has taken over 60 s.
    with qtbot.waitSignal(window.runner.finished, timeout=240_000):
        qtbot.mouseClick(window.demo_panel.run_button, Qt.MouseButton.LeftButton)
    window.runner.event.disconnect(events.append)
    return events


def test_demo_streams_original_and_compressed_side_by_side(qtbot, window):
    prune_half_the_mlp(window)
    events = run_demo(qtbot, window)
    assert sum(isinstance(e, CompressedModel) for e in events) == 1
    for pane in window.demo_panel.panes.values():
        assert pane.summary is not None and pane.summary.new_tokens == 8
        assert pane.output.toPlainText() == pane.summary.text
        assert "tokens/s" in pane.speed.text()
    verdict = window.demo_panel.verdict.text()
    assert "x the original's tokens/s" in verdict and "original on torch-eager on cpu" in verdict
    # The same recipe again reuses the compressed model instead of rebuilding it.
    again = run_demo(qtbot, window)
    assert not any(isinstance(e, CompressedModel) for e in again)


def test_demo_runs_the_compressed_model_on_the_chosen_backend(qtbot, window):
    """Run on: PyTorch compiled. The compressed pane decodes through the
    compiled runner and says so; its text is eager's (greedy, same weights)."""
    prune_half_the_mlp(window)
    run_demo(qtbot, window)
    eager_text = window.demo_panel.panes["compressed"].summary.text
    window.compression_panel.set_backend("torch-compile")
    run_demo(qtbot, window)
    assert "PyTorch compiled" in window.demo_panel._boxes["compressed"].title()
    compiled = window.demo_panel.panes["compressed"].summary
    assert compiled.new_tokens == 8 and compiled.text == eager_text


def test_demo_without_a_compression_says_what_to_do(qtbot, window):
    qtbot.mouseClick(window.demo_panel.run_button, Qt.MouseButton.LeftButton)
    assert not window.runner.busy
    assert "Set a compression" in window.notifications.messages()[0]


def test_two_selected_runs_are_compared(qtbot, window):
    run(qtbot, window)
    prune_half_the_mlp(window)
    run(qtbot, window)
    a, b = window.results_table.records
    table = window.results_table
    table.selectRow(0)
    index = table.model().index(1, 0)
    table.selectionModel().select(
        index, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    )
    assert window.compare_view.pair == (a, b)
    view = window.compare_view
    assert view.cell("Size MB", 2) == f"{b.bytes / a.bytes:.3f}x"
    assert view.cell("Decode ms/token", 1) == f"{b.metrics.decode_ms_per_token:.2f}"
    assert view.cell("Speed protocol", 2) == "same"


def test_run_charts_throughput_and_memory_live(qtbot, window):
    run(qtbot, window)
    live = window.live_view
    assert live.throughput.series.size > 0
    assert all(y > 0 for y in live.throughput.series.y)
    assert live.memory.series.size >= 1
    assert min(live.memory.series.y) > 10e6  # a Python process with torch holds far more
    window.tabs.setCurrentWidget(live)
    qtbot.waitUntil(lambda: live.throughput.points_drawn() == live.throughput.series.size)


def test_run_on_onnx_runtime_is_a_backend_choice(qtbot, window, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    window.compression_panel.set_backend("ort")
    run(qtbot, window)
    record = window.results_table.records[-1]
    assert record.backend == "ort" and "[ONNX Runtime]" in record.recipe_name
    assert not record.is_original  # the original is PyTorch's; this is its export
    assert record.metrics.top1_agreement is not None and record.metrics.top1_agreement > 0.99
    assert any((tmp_path / "cache" / "onnx").iterdir())
    window.compression_panel.set_backend("torch")
    window.results_table.selectRow(0)
    assert window.compression_panel.backend_key() == "ort"


def test_a_cancelled_demo_compares_only_what_both_wrote():
    from types import SimpleNamespace

    from app.demo_panel import _texts_compared

    def summary(text, reason="length"):
        return SimpleNamespace(text=text, stop_reason=reason)

    assert _texts_compared(summary("abc"), summary("abc")) == "the same text"
    assert _texts_compared(summary("abc"), summary("abd")) == "different text"
    # Cut short by Cancel: the shorter answer is not a different one.
    shared = _texts_compared(summary("abcdef", "cancelled"), summary("abc", "cancelled"))
    assert shared == "the same text as far as both got before Cancel"
    assert "different" in _texts_compared(summary("abX", "cancelled"), summary("abc", "length"))
