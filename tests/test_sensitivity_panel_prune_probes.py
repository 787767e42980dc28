"""The Sensitivity tab with the pruning probes: the chooser offers them,
each draws its own column (mlp, or the whole layer) with the Cells choice
off, the map fills from the job and resumes, and a click on a cell says in
the status line that no per-layer override exists (nothing changes in the
compression panel)."""

from __future__ import annotations

from PySide6.QtCore import QPointF

from core.jobs.sensitivity import SensitivityCell, SensitivityResumed
from tests.test_sensitivity_panel import choose, start


def test_each_pruning_probe_has_its_own_column_and_fills(qtbot, window):
    panel = window.sensitivity_panel
    window.tabs.setCurrentWidget(panel)
    choose(panel, probe="int8 weight-only", grid="Attention / MLP")
    assert panel.map.columns == ["attention", "mlp"] and panel.grid.isEnabled()
    for probe, columns in (
        ("Drop the layer", ["whole layer"]),
        ("25% of MLP neurons removed", ["mlp"]),
    ):
        choose(panel, probe=probe, grid="Attention / MLP")  # the grid choice does not apply
        assert panel.map.columns == columns and not panel.grid.isEnabled()
        assert panel.map.measured() == 0
        events = start(qtbot, window)
        cells = [e for e in events if isinstance(e, SensitivityCell)]
        assert [c.layer for c in cells] == [0, 1] and all(c.mean_kl > 0 for c in cells)
        assert panel.map.measured() == 2 and "Map complete" in panel.status.text()
        tip = panel.map.hover_at(QPointF(0.5, 1.5))
        assert tip.startswith("layer 1") and f"{cells[1].mean_kl:.5f}" in tip
        again = start(qtbot, window)  # stored: read back, nothing measured again
        assert isinstance(again[0], SensitivityResumed) and len(again[0].cells) == 2
        assert not any(isinstance(e, SensitivityCell) for e in again)
    choose(panel, probe="int8 weight-only")
    assert panel.grid.isEnabled()


def test_a_click_on_a_pruning_cell_says_there_is_no_override(qtbot, window):
    panel, compression = window.sensitivity_panel, window.compression_panel
    choose(panel, probe="Drop the layer")
    start(qtbot, window)
    int8 = compression.groups["int8_weight_only"]
    before = (int8.isChecked(), int8.controls["layers"].text(), [*window.notifications.messages()])
    panel.map.cell_clicked.emit(1, 0)
    assert "Layer 1" in panel.status.text() and "no per-layer override" in panel.status.text()
    after = (int8.isChecked(), int8.controls["layers"].text(), [*window.notifications.messages()])
    assert after == before  # nothing set silently either
    choose(panel, probe="int8 weight-only", grid="Whole layers")
    panel.map.cell_clicked.emit(1, 0)  # a quantization map still sets the override
    assert int8.isChecked() and int8.controls["layers"].text() == "1"
