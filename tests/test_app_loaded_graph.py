"""An exported ONNX folder loaded into the window: Run measures it on the
runtime that built it, the work that rewrites PyTorch modules is greyed with
the job's own reason, and a panel that fails to show an event no longer
leaves the rest of the window on the previous model."""

from __future__ import annotations

import pytest

from app.event_router import EventRouter
from core.jobs.loaded_graph import DISTILLATION
from core.models.loading import load_model
from core.onnx.export import export_onnx
from tests.test_app_compression import load, make_window, run


@pytest.fixture(scope="module")
def int8_graph(tmp_path_factory, tiny_llama_dir):
    folder = tmp_path_factory.mktemp("graph") / "onnx-int8"
    export_onnx(load_model(str(tiny_llama_dir), device="cpu"), folder, int8=True)
    return folder


def test_a_graph_runs_on_its_own_runtime_and_pytorch_work_is_greyed(qtbot, tmp_path, int8_graph):
    window = make_window(qtbot, tmp_path)
    load(qtbot, window, int8_graph)
    panel = window.compression_panel
    assert panel.backend_key() == "ort-int8" and not panel.backend.isEnabled()
    assert panel.estimate.text().startswith("ONNX graph:")
    assert panel.run_button.isEnabled()
    panel.groups["prune_mlp"].setChecked(True)
    assert not panel.run_button.isEnabled() and "PyTorch modules" in panel.problem.text()
    panel.groups["prune_mlp"].setChecked(False)
    run(qtbot, window)
    record = window.results_table.records[-1]
    assert (
        record.backend == "ort-int8" and record.bytes == window.loaded.description.bytes_in_memory
    )
    assert not window.distill_panel.run_button.isEnabled()
    assert DISTILLATION in window.distill_panel.status.text()
    assert not window.search_panel.start_button.isEnabled()
    assert not window.demo_panel.run_button.isEnabled()
    assert "ONNX graph" in window.sensitivity_panel.status.text()
    assert window.generate_panel.generate_button.isEnabled()  # generation runs on the graph
    window.close()


def test_loading_a_pytorch_model_after_a_graph_gives_the_work_back(
    qtbot, tmp_path, int8_graph, tiny_llama_dir
):
    window = make_window(qtbot, tmp_path)
    window.compression_panel.set_backend("ort")
    load(qtbot, window, int8_graph)
    window.compression_panel.set_backend("torch-compile")  # a restored row's, under the graph
    assert window.compression_panel.backend_key() == "ort-int8"
    load(qtbot, window, tiny_llama_dir)
    assert window.compression_panel.backend.isEnabled()
    assert window.compression_panel.backend_key() == "torch-compile"  # the user's choice back
    assert window.compression_panel.estimate.text().startswith("Estimated size")
    assert window.distill_panel.run_button.isEnabled()
    assert DISTILLATION not in window.distill_panel.status.text()
    assert window.search_panel.start_button.isEnabled() and window.demo_panel.run_button.isEnabled()
    window.close()


def test_a_failing_handler_is_reported_and_the_others_still_run():
    said, seen = [], []
    router = EventRouter(on_error=lambda event, error: said.append((event, str(error))))

    def broken(event):
        raise AttributeError("no named_modules")

    router.subscribe(int, broken)
    router.subscribe(int, seen.append)
    assert router.dispatch(7) == 2
    assert seen == [7] and said == [(7, "no named_modules")]


def test_without_an_error_handler_a_failing_handler_raises():
    router = EventRouter()
    router.subscribe(int, lambda event: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        router.dispatch(1)


def test_another_model_clears_the_last_ones_answers(qtbot, tmp_path, tiny_llama_dir, int8_graph):
    window = make_window(qtbot, tmp_path)
    load(qtbot, window, tiny_llama_dir)
    window.generate_panel.view.output.setPlainText("the last model's answer")
    window.demo_panel.verdict.setText("compressed is 2x faster")
    window.distill_panel.loss_chart.add_point(1, 2.0)
    window.live_view.latency.add_point(0, 1.0)
    load(qtbot, window, int8_graph)
    assert window.live_view.latency.series.size == 0
    assert window.generate_panel.view.output.toPlainText() == ""
    assert window.demo_panel.verdict.text() == ""
    assert window.distill_panel.loss_chart.series.size == 0
    window.close()
