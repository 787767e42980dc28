"""Static int8 (onnxruntime's quantize_static, QDQ) on a tiny Llama: the graph
holds QuantizeLinear/DequantizeLinear with per-channel weight scales, the
calibration reads the calibration split only (prefill and decode steps),
each method works and has its own cache entry, and a run on a static runtime
records and exports the graph it was measured on."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from core.models.loading import load_model
from core.onnx.cache import cached_onnx_export, graph_digest
from core.onnx.export import MODEL_FILE, REPORT_FILE, export_onnx
from core.onnx.graph import export_graph
from core.onnx.int8_static import (
    CALIBRATION_METHODS,
    DECODE_STEPS,
    HEAD_IN_FP32,
    WEIGHT_FORMAT,
    GraphCalibrationReader,
    head_matmul,
    quantize_graph_static,
)
from core.progress import CancelToken
from core.runtime.onnx.ort_model import OrtCausalLM
from core.runtime.registry import RUNTIMES, run_title

WEIGHT_TYPES = {"u8": onnx.TensorProto.UINT8, "s8": onnx.TensorProto.INT8}
WEIGHT_TYPES["s8-7bit"] = onnx.TensorProto.INT8


# Two methods go through the whole export (each traces the model: seconds);
# every method is run on one traced graph by test_every_method_quantises.
CACHED_METHODS = ("minmax", "entropy")


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, loaded):
    """Every method's static export in one cache (made once for the module)."""
    root = tmp_path_factory.mktemp("static-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_CACHE_DIR", str(root))
        folders = {m: cached_onnx_export(loaded, calibration=m) for m in CACHED_METHODS}
    return root, folders


@pytest.fixture(scope="module")
def fp32_graph(tmp_path_factory, loaded):
    path = tmp_path_factory.mktemp("fp32") / MODEL_FILE
    export_graph(loaded.model, path)
    return path


def _graph(folder):
    return onnx.load(str(folder / MODEL_FILE), load_external_data=False).graph


@pytest.mark.parametrize("method", CACHED_METHODS)
def test_static_graph_is_qdq_with_per_channel_weights(cache, loaded, method):
    folder = cache[1][method]
    assert folder.name.endswith(f"-int8-static-{method}")
    graph = _graph(folder)
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not ops & {"DynamicQuantizeLinear", "MatMulInteger"}  # not dynamic int8
    weights = {t.name: t for t in graph.initializer}
    produced_by = {out: n for n in graph.node for out in n.output}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    weight_side = [produced_by.get(n.input[1]) for n in matmuls]
    quantized = [n for n in weight_side if n is not None and n.op_type == "DequantizeLinear"]
    # 2 layers x (q, k, v, o, gate, up, down), all through a DQ; the head is
    # quantised too unless HEAD_IN_FP32 (the dev choice) keeps it float.
    assert len(quantized) == 2 * 7 + (0 if HEAD_IN_FP32 else 1)
    for dq in quantized:
        q_weight, scale = weights[dq.input[0]], numpy_helper.to_array(weights[dq.input[1]])
        assert q_weight.data_type == WEIGHT_TYPES[WEIGHT_FORMAT]
        axis = next(a.i for a in dq.attribute if a.name == "axis")
        assert axis == 1 and scale.shape == (q_weight.dims[1],)  # one scale per output
        assert len(np.unique(scale)) > 1
    # The activations the weights meet are quantised per tensor by a QuantizeLinear.
    activation_side = [produced_by.get(n.input[0]) for n in matmuls if n.input[0] in produced_by]
    assert sum(1 for n in activation_side if n.op_type == "DequantizeLinear") == len(quantized)
    # Attention's MatMuls of two activations stay float (and the head, if kept).
    float_matmuls = [
        n
        for n, w in zip(matmuls, weight_side, strict=True)
        if w is None or w.op_type != "DequantizeLinear"
    ]
    assert len(float_matmuls) == 2 * 2 + (1 if HEAD_IN_FP32 else 0)
    assert (matmuls[-1].input[1] in weights) == HEAD_IN_FP32  # the head: the last MatMul
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["int8"] is True and report["calibration"] == method
    f = report["fidelity"]
    assert f["passed"] and f["decode_positions"] > 0
    # Random tiny models have no outliers: static int8 stays close to fp32.
    assert f["top1_agreement"] >= 0.97 and f["mean_kl"] < 1e-2


def test_each_method_has_its_own_cache_entry_and_graph(cache, loaded, monkeypatch):
    root, folders = cache
    assert len({f.name for f in folders.values()}) == len(CACHED_METHODS)
    digests = {graph_digest(f) for f in folders.values()}
    assert len(digests) == len(CACHED_METHODS)  # the methods give different scales
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(root))
    stamp = (folders["entropy"] / MODEL_FILE).stat().st_mtime_ns
    assert cached_onnx_export(loaded, calibration="entropy") == folders["entropy"]
    assert (folders["entropy"] / MODEL_FILE).stat().st_mtime_ns == stamp  # reused


def test_calibration_reads_only_the_calibration_split(fp32_graph, loaded, tmp_path, monkeypatch):
    from core.data import texts

    asked = []
    real = texts.split_texts
    monkeypatch.setattr(
        texts, "split_texts", lambda src, split: asked.append(split) or real(src, split)
    )
    reader = quantize_graph_static(
        fp32_graph,
        tmp_path / MODEL_FILE,
        loaded.model.config,
        loaded.tokenizer,
        "minmax",
        CancelToken(),
    )
    assert asked and set(asked) == {"calibration"}
    assert reader.windows_read == list(range(len(reader.windows)))  # every window, once
    assert len(reader) == len(reader.windows) * (1 + DECODE_STEPS)


def test_every_method_quantises_with_its_own_ranges(fp32_graph, loaded, tmp_path):
    scales = {}
    for method in CALIBRATION_METHODS:
        target = tmp_path / method / MODEL_FILE
        target.parent.mkdir()
        quantize_graph_static(
            fp32_graph, target, loaded.model.config, loaded.tokenizer, method, CancelToken()
        )
        graph = onnx.load(str(target), load_external_data=True)
        initializers = {t.name: t for t in graph.graph.initializer}
        q = [n for n in graph.graph.node if n.op_type == "QuantizeLinear"]
        assert q, method
        scales[method] = tuple(float(numpy_helper.to_array(initializers[n.input[1]])) for n in q)
        ort_model = OrtCausalLM(target, loaded.model.config, None)
        ids = torch.arange(3, 40).view(1, -1)
        with torch.no_grad():
            reference = loaded.model(input_ids=ids).logits
        agree = (ort_model(input_ids=ids).logits.argmax(-1) == reference.argmax(-1)).float()
        assert agree.mean() >= 0.9, method
    assert len(set(scales.values())) == len(CALIBRATION_METHODS)  # each its own ranges


def test_reader_feeds_a_prefill_then_decode_steps_on_its_cache(fp32_graph, loaded):
    windows = [torch.arange(3, 3 + 24)]
    reader = GraphCalibrationReader(fp32_graph, loaded.model.config, windows, 3, CancelToken())
    items = list(iter(reader.get_next, None))
    assert len(items) == 4
    prefill, *decode = items
    assert prefill["input_ids"].shape == (1, 21) and prefill["logits_positions"].tolist() == list(
        range(21)
    )
    assert prefill["past_key_values.0.key"].shape[2] == 0
    for j, item in enumerate(decode):
        assert item["input_ids"].tolist() == [[3 + 21 + j]]
        assert item["past_key_values.1.value"].shape[2] == 21 + j
        assert item["attention_mask"].shape == (1, 22 + j)
    # The decode items' cache is the float graph's: it reproduces PyTorch's next logits.
    graph = OrtCausalLM(fp32_graph, loaded.model.config, None)
    past = [ort.OrtValue.ortvalue_from_numpy(decode[-1][name]) for name in graph._past_names]
    logits = graph.step(decode[-1]["input_ids"], past, np.array([0])).logits[0, -1]
    with torch.no_grad():
        reference = loaded.model(input_ids=windows[0].view(1, -1)).logits[0, -1]
    assert (logits - reference).abs().max() < 1e-4
    reader.set_range(4, 8)  # a range past the end reads nothing
    assert reader.get_next() is None


def test_excluded_nodes_stay_float(fp32_graph, loaded, tmp_path):
    head = head_matmul(fp32_graph)
    graph = onnx.load(str(fp32_graph), load_external_data=False).graph
    node = next(n for n in graph.node if n.name == head)
    assert "lm_head" in node.input[1]  # the untied, pre-transposed head weight
    for exclude, stays_float in (((head,), True), ((), False)):
        target = tmp_path / f"excluded-{len(exclude)}" / MODEL_FILE
        target.parent.mkdir()
        quantize_graph_static(
            fp32_graph,
            target,
            loaded.model.config,
            loaded.tokenizer,
            "minmax",
            CancelToken(),
            windows=[torch.arange(3, 40)],
            exclude=exclude,
        )
        graph = onnx.load(str(target), load_external_data=False).graph
        node = next(n for n in graph.node if n.name == head)
        weights = {t.name for t in graph.initializer}
        assert (node.input[1] in weights) == stays_float  # float: reads its weight directly


def test_unknown_method_and_both_kinds_are_refused(loaded, tmp_path):
    with pytest.raises(ValueError, match="unknown calibration method"):
        export_onnx(loaded, tmp_path / "a", calibration="mse")
    with pytest.raises(ValueError, match="static"):
        export_onnx(loaded, tmp_path / "b", int8=True, calibration="minmax")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_runtimes_are_registered_and_named_in_tables():
    static = {k: r for k, r in RUNTIMES.items() if r.calibration}
    assert {r.calibration for r in static.values()} == set(CALIBRATION_METHODS)
    for key, chosen in static.items():
        assert chosen.onnx and not chosen.int8 and key == f"ort-int8-static-{chosen.calibration}"
    assert run_title("int8 head", "ort-int8-static-entropy") == (
        "int8 head [ONNX Runtime int8 static (Entropy)]"
    )


def test_cli_bench_on_a_static_runtime(cache, tiny_llama_dir, monkeypatch, capsys):
    from core.cli.main import main

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(cache[0]))
    args = ["bench", "-m", str(tiny_llama_dir), "--backend", "ort-int8-static-entropy"]
    args += ["--json", "--prompt-tokens", "8", "--new-tokens", "3", "--min-repeats", "1"]
    assert main([*args, "--min-time", "0"]) == 0
    data = json.loads(capsys.readouterr().out)  # stdout holds the JSON only
    assert data["environment"]["runner"] == "onnxruntime-cpu-int8-static"


def test_a_static_run_exports_the_graph_it_was_timed_on(loaded, cache, tmp_path, monkeypatch):
    from core.jobs.export import ExportRequest, export
    from core.jobs.run import RunRequest, run
    from core.passes.recipe import Recipe
    from core.results.store import RunRecord
    from tests.test_provenance import SETTINGS

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(cache[0]))
    events = list(run(RunRequest(loaded, Recipe(), "ort-int8-static-minmax", settings=SETTINGS)))
    record = next(e for e in events if isinstance(e, RunRecord))
    assert record.artifact["onnx_calibration"] == "minmax"
    assert record.artifact["onnx_sha256"] == graph_digest(cache[1]["minmax"])
    out = tmp_path / "export"
    list(export(ExportRequest(loaded, out, ("hf",), record)))
    assert graph_digest(out / "onnx-int8-static-minmax") == record.artifact["onnx_sha256"]
    assert not (out / "onnx").exists() and not (out / "onnx-int8").exists()
    tampered = replace(record, artifact={**record.artifact, "onnx_sha256": "0" * 64})
    from core.jobs.provenance import ProvenanceError

    with pytest.raises(ProvenanceError):
        list(export(ExportRequest(loaded, tmp_path / "export2", ("hf",), tampered)))
