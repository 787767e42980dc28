"""Exporting a run from the window: files appear only when complete, a
refused target says why, and the window stays usable."""

from app.export_dialog import ExportDialog
from tests.test_app_compression import run


def export(qtbot, window, record, target, formats, overwrite=False):
    with qtbot.waitSignal(window.runner.finished, timeout=120_000):
        window.export_run(record, target, formats, overwrite)


def test_export_a_run_as_folder_and_report(qtbot, window, tmp_path):
    run(qtbot, window)
    group = window.compression_panel.groups["prune_mlp"]
    group.setChecked(True)
    run(qtbot, window)
    record = window.results_table.records[1]
    target = tmp_path / "exported"
    export(qtbot, window, record, target, ["hf", "report"])
    assert (target / "report.html").is_file() and (target / "config.json").is_file()
    assert "Exported hf, report" in window.notifications.messages()[0]
    assert record.run_id in (target / "report.json").read_text()

    # The same target again is refused with the reason; nothing is replaced.
    before = (target / "report.json").stat().st_mtime_ns
    export(qtbot, window, record, target, ["report"])
    assert "exists" in window.notifications.messages()[0]
    assert (target / "report.json").stat().st_mtime_ns == before
    assert not window.runner.busy


def test_export_dialog_offers_every_format_and_returns_the_choice(qtbot, tmp_path):
    dialog = ExportDialog("int8_weight_only", ["hf", "report", "onnx"], tmp_path)
    qtbot.addWidget(dialog)
    assert dialog.formats["hf"].isChecked() and not dialog.formats["onnx"].isChecked()
    dialog.formats["report"].setChecked(False)
    target, formats, overwrite = dialog.chosen()
    assert target == tmp_path / "int8_weight_only" and formats == ["hf"] and not overwrite
