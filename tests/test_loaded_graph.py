"""A model loaded from an exported ONNX folder: measured as it was built, on
the runtime that built it, and refused in one line by everything that
rewrites PyTorch modules (these failed with an AttributeError or a pickling
error on the InferenceSession, in the CLI and the window)."""

from __future__ import annotations

import pytest

from core.errors import UnsupportedModelError
from core.jobs.distill import DistillRequest, distill_student
from core.jobs.export import ExportRequest, export
from core.jobs.loaded_graph import graph_run_refusal, graph_runtime
from core.jobs.run import RunRequest, run
from core.models.loading import load_model
from core.models.loading_onnx import load_onnx_folder
from core.onnx.export import REPORT_FILE, export_onnx
from core.passes.recipe import Recipe
from core.results.store import RunRecord
from tests.test_cli import run_cli
from tests.test_provenance import SETTINGS

INT8_WEIGHTS = Recipe.from_dict(
    {"format": 1, "passes": [{"pass": "int8_weight_only", "version": 1}]}
)
GRAPHS = {  # folder name: export_onnx's settings, and the runtime key its runs record
    "fp32": ({}, "ort"),
    "int8": ({"int8": True}, "ort-int8"),
    "w4": ({"weight_bits": 4}, "ort-w4"),
    "static": ({"calibration": "minmax"}, "ort-int8-static-minmax"),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_llama_dir):
    original = load_model(str(tiny_llama_dir), device="cpu")
    root = tmp_path_factory.mktemp("graphs")
    for name, (options, _) in GRAPHS.items():
        export_onnx(original, root / name, **options)
    return root


def _opened(folder):
    return load_onnx_folder(folder, str(folder), "cpu")


@pytest.mark.parametrize("name", list(GRAPHS))
def test_a_loaded_graph_knows_the_runtime_that_built_it(exported, name):
    assert graph_runtime(_opened(exported / name).model) == GRAPHS[name][1]


def test_a_static_graph_without_its_record_is_refused_not_guessed(exported, tmp_path):
    import shutil

    copy = tmp_path / "static"
    shutil.copytree(exported / "static", copy)
    (copy / REPORT_FILE).unlink()  # the calibration method leaves no trace in the graph
    model = _opened(copy).model
    assert graph_runtime(model) is None
    assert "cannot tell" in graph_run_refusal(model, "g", Recipe(), "torch")


def test_a_run_of_a_graph_is_recorded_on_its_runtime_with_its_stored_weights(exported):
    loaded = _opened(exported / "int8")
    events = list(run(RunRequest(loaded, Recipe(), settings=SETTINGS, threads=1)))
    record = events[-1]
    assert isinstance(record, RunRecord)
    assert record.backend == "ort-int8" and record.artifact["runtime"] == "ort-int8"
    assert record.bytes == loaded.description.bytes_in_memory
    assert len(record.artifact["onnx_sha256"]) == 64
    assert any("loaded ONNX graph" in note for note in record.notes)


@pytest.mark.parametrize(
    ("name", "precision"),
    [("w4", "int4 weights, float32 activations"), ("static", "int8 weights and activations")],
)
def test_bench_names_what_a_graph_computes_in(exported, name, precision):
    # the header said "float32" for every graph, quantised or not
    out = run_cli(
        "bench", "-m", str(exported / name), "--prompt-tokens", "4", "--new-tokens", "4",
        "--min-repeats", "2", "--min-time", "0", "--threads", "1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert precision in out.stdout.splitlines()[0]


def test_passes_and_other_runtimes_are_refused_on_a_graph(exported):
    loaded = _opened(exported / "fp32")
    with pytest.raises(UnsupportedModelError, match="int8_weight_only .*PyTorch modules"):
        list(run(RunRequest(loaded, INT8_WEIGHTS, settings=SETTINGS, threads=1)))
    with pytest.raises(UnsupportedModelError, match="runs only as it was exported"):
        list(run(RunRequest(loaded, Recipe(), "ort-w4", settings=SETTINGS, threads=1)))


def test_export_and_distillation_refuse_a_graph(exported, tmp_path):
    from core.distill.student import StudentShape

    loaded = _opened(exported / "fp32")
    with pytest.raises(UnsupportedModelError, match="is an ONNX graph"):
        list(export(ExportRequest(loaded, tmp_path / "out", ("report",), recipe=Recipe())))
    assert not (tmp_path / "out").exists()
    request = DistillRequest(loaded, StudentShape(drop_layers=1), tmp_path / "store")
    with pytest.raises(UnsupportedModelError, match="distillation works on PyTorch"):
        list(distill_student(request))
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("compress", "--pass", "prune_mlp:fraction=0.25"),
        ("compress", "--backend", "ort-w8", "--no-eval"),
        ("compress", "--backend", "torch", "--no-eval"),  # named: not "as loaded" (sweep 12)
        ("bench", "--backend", "ort-int8"),
        ("sensitivity", "--probe", "int8_weight_only"),
        ("search", "--max-bytes", "100000", "--budget-s", "30"),
        ("distill", "--drop-layers", "1", "--steps", "1"),
        ("generate", "--dtype", "bfloat16", "--max-new-tokens", "2"),  # was silently ignored
    ],
)
def test_the_cli_refuses_pytorch_work_on_a_graph_in_one_line(exported, tmp_path, args):
    import os

    env = {**os.environ, "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    out = run_cli(*args, "--model", str(exported / "fp32"), env=env)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "ONNX graph" in out.stderr
    assert not list((tmp_path / "data").glob("*.jsonl"))  # no empty store left by a refusal


@pytest.mark.parametrize(
    "field, value, said",
    [("hidden_size", 32, "hidden size: graph 64, config 32"), ("num_hidden_layers", 3, "layers")],
)
def test_a_config_that_does_not_describe_the_graph_is_refused(
    exported, tmp_path, field, value, said
):
    """A wrong hidden size was accepted and shown; a wrong layer count was
    blamed on the graph ("not exported by the workbench") (sweep eleven)."""
    import json
    import shutil

    from core.errors import CorruptModelError

    copy = tmp_path / "graph"
    shutil.copytree(exported / "fp32", copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config | {field: value}))
    with pytest.raises(CorruptModelError, match=f"does not describe this graph \\({said}"):
        _opened(copy)


def test_on_disk_counts_the_graphs_external_weights(exported):
    folder = exported / "fp32"
    weights = sum(p.stat().st_size for p in folder.glob("model.onnx*"))
    assert (folder / "model.onnx.data").is_file()
    assert _opened(folder).description.bytes_on_disk == weights


def test_exporting_a_graphs_run_from_its_source_says_why_not(exported, tiny_llama_dir, tmp_path):
    """The advice was "pass --model <graph>", which export then refused (sweep twelve)."""
    import json
    import os

    env = {**os.environ, "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    graph = exported / "int8"
    out = run_cli("compress", "--model", str(graph), "--no-eval", "--json", env=env)
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    out = run_cli(
        "export", "--model", str(tiny_llama_dir), "--run", run_id, "--out", str(tmp_path / "x"),
        env=env,
    )  # fmt: skip
    assert out.returncode == 2 and "measured on the ONNX graph" in out.stderr
    assert "pass --model" not in out.stderr and not (tmp_path / "x").exists()
