"""Distillation from the window: the loss chart fills, cancel keeps a
checkpoint, a resume continues from it, and the student joins the results."""

from PySide6.QtCore import Qt

from core.distill.settings import DistillSettings
from core.distill.student import StudentShape

TINY = DistillSettings(
    steps=6,
    batch_size=2,
    seq_len=32,
    warmup_steps=1,
    eval_every=3,
    eval_windows=2,
    eval_context_tokens=64,
    checkpoint_every=2,
    max_train_tokens=20_000,
)


def test_distil_charts_loss_and_the_student_joins_the_results(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.runner.finished, timeout=120_000):
        window.distill_student(StudentShape(drop_layers=1), TINY, True, tmp_path / "ckpt")
    panel = window.distill_panel
    assert panel.loss_chart.series.size == 6
    assert panel.ppl_chart.series.size >= 2
    record = window.results_table.records[-1]
    assert "distilled (6 steps)" in record.recipe_name
    assert record.metrics.ppl is not None and record.metrics.top1_agreement is not None
    assert record.metrics.top1_agreement < 1.0  # measured against the teacher, not assumed
    status = panel.status.text()  # "now measuring" stayed after the measurement
    assert (
        status.startswith(("Student measured", "BROKEN")) and f"{record.metrics.ppl:.2f}" in status
    )
    assert len(window.pareto_chart.plotted()) == 1


def test_cancelled_distillation_resumes_from_its_checkpoint(qtbot, window, tmp_path):
    slow = DistillSettings(**{**TINY.to_dict(), "steps": 400, "checkpoint_every": 1000})
    window.distill_student(StudentShape(drop_layers=1), slow, True, tmp_path / "ckpt")
    qtbot.waitUntil(lambda: window.distill_panel.loss_chart.series.size >= 3, timeout=60_000)
    with qtbot.waitSignal(window.runner.finished, timeout=10_000):
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    done = window.distill_panel.loss_chart.series.size
    assert window.results_table.rowCount() == 0
    assert any("cancelled" in m for m in window.notifications.messages())
    assert "cancelled" in window.distill_panel.status.text()  # not a step still "running"

    events = []
    window.runner.event.connect(events.append)
    resumed = DistillSettings(**{**slow.to_dict(), "steps": done + 2})
    with qtbot.waitSignal(window.runner.finished, timeout=120_000):
        window.distill_student(StudentShape(drop_layers=1), resumed, True, tmp_path / "ckpt")
    first = next(e for e in events if type(e).__name__ == "DistillResumed")
    assert first.step >= done - 1  # the cancel saved the last finished step
    assert window.distill_panel.loss_chart.series.x[-1] == done + 2
    assert window.results_table.rowCount() == 1


def test_a_student_distilled_from_the_cli_is_in_the_window_after_a_restart(
    qtbot, tmp_path, tiny_llama_dir
):
    """`workbench distill` runs the window's Distil job and stores the same
    RunRecord, so a window opened afterwards lists the student; its export
    would hand over the kept trained weights."""
    import json
    import os

    from tests.test_app_compression import make_window
    from tests.test_cli import run_cli

    data = tmp_path / "data"
    args = [
        "distill", "-m", str(tiny_llama_dir), "--drop-layers", "1", "--steps", "3",
        "--seq-len", "32", "--text", "pydoc", "--eval-windows", "2", "--eval-context", "64",
        "--batch-size", "2", "--threads", "1", "--json",
    ]  # fmt: skip
    os.environ["WORKBENCH_DATA_DIR"], before = str(data), os.environ["WORKBENCH_DATA_DIR"]
    try:
        out = run_cli(*args)
    finally:
        os.environ["WORKBENCH_DATA_DIR"] = before
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]

    window = make_window(qtbot, data)  # a new window on the same results store
    (student,) = [r for r in window.results_table.records if r.run_id == run_id]
    assert "distilled (3 steps)" in student.recipe_name and student.metrics.ppl > 1
    assert student.artifact["kind"] == "trained-weights"
    assert (data / student.artifact["weights_folder"]).is_dir()
    window.close()


def test_the_layers_a_student_may_drop_follow_the_loaded_model(qtbot, window):
    """The tiny Llama has 2 layers: dropping 8 (the default for real models)
    cannot be asked; the spin box stops at 1."""
    panel = window.distill_panel
    assert panel.drop_layers.maximum() == window.loaded.description.layers - 1
    assert panel.drop_layers.value() <= panel.drop_layers.maximum()
