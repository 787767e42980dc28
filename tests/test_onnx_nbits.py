"""Weight-only int8 / int4 graphs (ONNX Runtime's MatMulNBits) on tiny models
of several families: every weight MatMul, the LM head included, becomes a
MatMulNBits node holding ``bits``-bit blocks; the int4 graph's embedding is
block-quantised too; the graph passes the export's fidelity gate, is smaller
on disk than the fp32 graph, has its own cache entry, runs from the CLI, and a
run on it exports the very graph it was timed on."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import numpy_helper

from core.models.loading import load_model
from core.onnx.cache import cached_onnx_export, graph_digest
from core.onnx.export import MODEL_FILE, REPORT_FILE, export_onnx
from core.onnx.nbits import BLOCK_SIZE
from core.runtime.registry import RUNTIMES


def _graph(folder):
    return onnx.load(str(folder / MODEL_FILE), load_external_data=True).graph


def _size(folder) -> int:
    return sum(p.stat().st_size for p in folder.glob(f"{MODEL_FILE}*"))


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, loaded):
    root = tmp_path_factory.mktemp("nbits-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_CACHE_DIR", str(root))
        folders = {bits: cached_onnx_export(loaded, weight_bits=bits) for bits in (8, 4)}
        folders[0] = cached_onnx_export(loaded)
    return root, folders


@pytest.mark.parametrize("bits", [8, 4])
def test_every_weight_matmul_becomes_matmulnbits(cache, loaded, bits):
    folder = cache[1][bits]
    assert folder.name.endswith(f"-int{bits}-weight-only")
    graph = _graph(folder)
    ops = [n.op_type for n in graph.node]
    fp32_ops = [n.op_type for n in _graph(cache[1][0]).node]
    weights = {t.name for t in _graph(cache[1][0]).initializer}
    weight_matmuls = [
        n for n in _graph(cache[1][0]).node if n.op_type == "MatMul" and n.input[1] in weights
    ]
    # every block linear (7 per layer) and the head
    assert len(weight_matmuls) == 7 * loaded.model.config.num_hidden_layers + 1
    assert ops.count("MatMulNBits") == len(weight_matmuls)
    assert ops.count("MatMul") == fp32_ops.count("MatMul") - len(weight_matmuls)
    for node in (n for n in graph.node if n.op_type == "MatMulNBits"):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["bits"] == bits and attrs["block_size"] == BLOCK_SIZE
        assert attrs["accuracy_level"] == 4
    if bits == 4:
        assert "GatherBlockQuantized" in ops and "Gather" not in [
            n.op_type for n in graph.node if n.input and n.input[0].startswith("model.embed")
        ]
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["weight_bits"] == bits and report["fidelity"]["passed"]


def test_weight_only_graphs_are_smaller_and_int4_smallest(cache):
    fp32, w8, w4 = (_size(cache[1][b]) for b in (0, 8, 4))
    assert w4 < w8 < fp32
    graph = _graph(cache[1][0])
    weights = {t.name: t for t in graph.initializer}
    matmul_bytes = sum(
        numpy_helper.to_array(weights[n.input[1]]).nbytes
        for n in graph.node
        if n.op_type == "MatMul" and n.input[1] in weights
    )
    # int8 blocks of 32 with an fp32 scale: 1.125 bytes a weight instead of 4
    assert w8 <= fp32 - 0.7 * matmul_bytes
    assert w4 <= w8 - 0.35 * matmul_bytes


def test_int8_blocks_hold_the_weights_to_their_grid(cache, loaded):
    """The quantised head, dequantised, is the fp32 head to half a step per block."""
    import numpy as np

    graph = _graph(cache[1][8])
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    vocab = loaded.model.config.vocab_size
    head = next(
        n
        for n in graph.node
        if n.op_type == "MatMulNBits" and any(a.name == "N" and a.i == vocab for a in n.attribute)
    )
    q, scales = tensors[head.input[1]], tensors[head.input[2]]
    weight = loaded.model.lm_head.weight.detach().numpy()  # [vocab, hidden]
    n, k = weight.shape
    q = q.reshape(n, -1, BLOCK_SIZE).astype(np.float32) - 128  # symmetric: zero point 128
    dequant = (q * scales.reshape(n, -1, 1)).reshape(n, -1)[:, :k]
    step = np.abs(np.repeat(scales.reshape(n, -1), BLOCK_SIZE, axis=1)[:, :k])
    error = np.abs(dequant - weight)
    # The block's largest |w| sits at -128 steps; a value near its negative
    # would round to +128 and is clamped to 127: at most one step off.
    clamped = q.reshape(n, -1)[:, :k] == 127
    assert np.all(error[~clamped] <= step[~clamped] / 2 + 1e-6)
    assert np.all(error[clamped] <= step[clamped] + 1e-6) and clamped.mean() < 0.01


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "gemma2"])
def test_other_families_export_weight_only(family, tmp_path):
    from tests.tiny_models import save_tiny_model

    loaded = load_model(str(save_tiny_model(family, tmp_path / family)), device="cpu")
    result = export_onnx(loaded, tmp_path / "w4", weight_bits=4)
    assert result.fidelity.passed and result.weight_bits == 4
    ops = {n.op_type for n in _graph(tmp_path / "w4").node}
    assert "MatMulNBits" in ops


def test_bad_bits_and_mixed_kinds_are_refused(loaded, tmp_path):
    with pytest.raises(ValueError, match="8 or 4"):
        export_onnx(loaded, tmp_path / "a", weight_bits=3)
    with pytest.raises(ValueError, match="weight-only"):
        export_onnx(loaded, tmp_path / "b", int8=True, weight_bits=8)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_runtimes_are_registered():
    assert RUNTIMES["ort-w8"].weight_bits == 8 and RUNTIMES["ort-w8"].onnx
    assert RUNTIMES["ort-w4"].weight_bits == 4 and not RUNTIMES["ort-w4"].int8


def test_cli_bench_on_int4_weight_only(cache, tiny_llama_dir, monkeypatch, capsys):
    from core.cli.main import main

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(cache[0]))
    args = ["bench", "-m", str(tiny_llama_dir), "--backend", "ort-w4", "--json"]
    args += ["--prompt-tokens", "8", "--new-tokens", "3", "--min-repeats", "1", "--min-time", "0"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["environment"]["runner"] == "onnxruntime-cpu-weight-only"


def test_a_weight_only_run_exports_the_graph_it_was_timed_on(loaded, cache, tmp_path, monkeypatch):
    from core.jobs.export import ExportRequest, export
    from core.jobs.run import RunRequest, run
    from core.passes.recipe import Recipe
    from core.results.store import RunRecord
    from tests.test_provenance import SETTINGS

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(cache[0]))
    events = list(run(RunRequest(loaded, Recipe(), "ort-w8", settings=SETTINGS)))
    record = next(e for e in events if isinstance(e, RunRecord))
    assert record.artifact["onnx_weight_only"]["bits"] == 8
    assert record.artifact["onnx_sha256"] == graph_digest(cache[1][8])
    out = tmp_path / "export"
    list(export(ExportRequest(loaded, out, ("hf",), record)))
    assert graph_digest(out / "onnx-int8-weight-only") == record.artifact["onnx_sha256"]


def test_an_int4_export_logs_nothing_at_info(loaded, tmp_path, caplog):
    """torch.onnx's passes and the MatMulNBits quantiser log every node at
    INFO (thousands of lines in the CLI's output); the export turns that off."""
    import logging

    with caplog.at_level(logging.INFO):
        export_onnx(loaded, tmp_path / "w4", weight_bits=4)
        assert [r for r in caplog.records if r.levelno <= logging.INFO] == []
        logging.getLogger("onnxruntime.quantization").info("logging is back on after the export")
    assert caplog.records[-1].getMessage() == "logging is back on after the export"
