"""Provenance: every run has an ID and what rebuilds exactly what it measured;
exporting a run hands over that artifact (trained weights, the measured ONNX
graph), checked by sha256, and the report presents that run."""

import json
from dataclasses import replace

import pytest
import torch

from core.distill.settings import DistillSettings
from core.distill.student import StudentShape
from core.jobs.distill import DistillRequest, distill_student
from core.jobs.export import ExportRequest, export
from core.jobs.provenance import ProvenanceError
from core.jobs.run import RunRequest, run
from core.models.loading import load_model
from core.passes.recipe import Recipe
from core.results.store import ResultsStore, RunRecord
from tests.test_app_compression import TINY_SETTINGS
from tests.test_compiled_runner import TINY_BENCH

SETTINGS = replace(TINY_SETTINGS, bench=TINY_BENCH)
DISTIL = DistillSettings(
    steps=3,
    learning_rate=2e-3,
    warmup_steps=1,
    batch_size=2,
    seq_len=32,
    text_source="pydoc",
    max_train_tokens=20_000,
    eval_every=None,
    checkpoint_every=0,
)
TEXT = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 64, 128, 11]])


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def original(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def _record(events) -> RunRecord:
    records = [e for e in events if isinstance(e, RunRecord)]
    assert len(records) == 1
    return records[0]


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=TEXT).logits


def test_a_run_has_a_stable_id_and_its_recipe_artifact(original):
    recipe = Recipe.from_dict({"format": 1, "passes": [{"pass": "int8_weight_only", "version": 1}]})
    first = _record(run(RunRequest(original, recipe, settings=SETTINGS, threads=1)))
    second = _record(run(RunRequest(original, recipe, settings=SETTINGS, threads=1)))
    assert first.run_id and second.run_id and first.run_id != second.run_id
    assert first.artifact["kind"] == "recipe" and first.artifact["runtime"] == "torch"
    assert Recipe.from_dict(first.artifact["recipe"]) == recipe


def test_exported_student_is_the_trained_one_not_the_pruned_one(original, tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    request = DistillRequest(
        original, StudentShape(drop_layers=1), tmp_path, DISTIL, SETTINGS, threads=1
    )
    record = store.append(_record(distill_student(request)))
    assert record.artifact["kind"] == "trained-weights"
    assert len(record.artifact["weights_sha256"]) == 64

    out = tmp_path / "export"
    job = ExportRequest(original, out, ("hf", "report"), record, store_dir=tmp_path)
    list(export(job))
    exported = load_model(str(out), device="cpu")
    trained = load_model(str(tmp_path / record.artifact["weights_folder"]), device="cpu")
    assert torch.equal(_logits(exported.model), _logits(trained.model))
    # ...and not the untrained student the recipe alone rebuilds
    from core.jobs.experiment import build_compressed

    pruned = build_compressed(original, Recipe.from_dict(record.recipe), SETTINGS).loaded
    assert not torch.allclose(_logits(exported.model), _logits(pruned.model))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["run_id"] == record.run_id
    report = json.loads((out / "report.json").read_text())
    assert report["exported_run"]["run_id"] == record.run_id
    # Its title and commands are the trained run's, not the recipe's (whose
    # commands rebuilt the untrained student; a sweep found them so).
    assert report["title"].endswith(record.recipe_name) and "distilled" in report["title"]
    (command,) = report["reproduce"]["commands"]
    assert f"--run {record.run_id}" in command and "compress" not in command
    assert report["reproduce"]["training"]["steps"] == DISTIL.steps
    assert "These weights were trained (3 distillation steps" in (out / "report.html").read_text()


def test_tampered_trained_weights_are_refused(original, tmp_path):
    request = DistillRequest(
        original, StudentShape(drop_layers=1), tmp_path, DISTIL, SETTINGS, threads=1
    )
    record = _record(distill_student(request))
    weights = next((tmp_path / record.artifact["weights_folder"]).glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    job = ExportRequest(original, tmp_path / "export", ("hf",), record, store_dir=tmp_path)
    with pytest.raises(ProvenanceError, match="changed since they were measured"):
        list(export(job))
    assert not (tmp_path / "export").exists()


def test_student_without_kept_weights_is_refused(original, tmp_path):
    old = RunRecord.from_dict({**_minimal(), "recipe_name": "prune_layers 1 + distilled (3 steps)"})
    job = ExportRequest(original, tmp_path / "export", ("hf",), old, store_dir=tmp_path)
    with pytest.raises(ProvenanceError, match="not kept"):
        list(export(job))


def test_ort_run_exports_the_graph_it_was_timed_on(original, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    recipe = Recipe()
    record = _record(run(RunRequest(original, recipe, "ort", settings=SETTINGS, threads=1)))
    assert record.backend == "ort" and len(record.artifact["onnx_sha256"]) == 64
    out = tmp_path / "export"
    list(export(ExportRequest(original, out, ("hf", "report"), record)))
    from core.onnx.cache import graph_digest

    assert graph_digest(out / "onnx") == record.artifact["onnx_sha256"]
    assert not (out / "onnx-int8").exists()  # only what was measured
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["measured_on"] == "ONNX Runtime"
    assert provenance["onnx_graph"]["verified"] is True
    report = json.loads((out / "report.json").read_text())
    assert report["measured_on"] == "ONNX Runtime"
    assert report["exported_run"]["run_id"] == record.run_id
    assert "measured on <b>ONNX Runtime</b>" in (out / "report.html").read_text()

    # a graph that no longer matches what was measured is refused
    tampered = replace(record, artifact={**record.artifact, "onnx_sha256": "0" * 64})
    with pytest.raises(ProvenanceError, match="not the one"):
        list(export(ExportRequest(original, tmp_path / "export2", ("hf",), tampered)))
    assert not (tmp_path / "export2").exists()


def _minimal() -> dict:
    return dict(
        model="m",
        recipe={"format": 1, "passes": [{"pass": "prune_layers", "version": 1, "count": 1}]},
        recipe_name="x",
        bytes=1,
        bytes_by_component={},
        prefill_ms=1.0,
        decode_ms_per_token=1.0,
        tokens_per_s=1.0,
        ppl=1.0,
        ppl_ci95=0.1,
        top1_agreement=1.0,
        mean_kl=0.0,
        device="cpu",
        threads=1,
        bench_protocol="",
        eval_protocol="",
    )


def test_a_broken_run_is_exported_as_measured_and_says_so(original, tmp_path):
    """hf/onnx/gguf exports of a collapsed run printed a plain success, and
    their files carried no flag (sweep nine)."""
    recipe = Recipe.from_dict({"format": 1, "passes": [{"pass": "int8_weight_only", "version": 1}]})
    record = _record(run(RunRequest(original, recipe, settings=SETTINGS, threads=1)))
    flag = "collapsed: top-1 agreement 0.30 < 0.5; likely cause: int8 weights"
    record = replace(record, broken=flag)
    said = []
    job = ExportRequest(original, tmp_path / "out", ("hf",), record, store_dir=tmp_path)
    list(export(job, lambda p: said.append(p.stage)))
    assert f"Exporting a run flagged BROKEN ({flag})" in said
    assert json.loads((tmp_path / "out" / "provenance.json").read_text())["broken"] == flag
