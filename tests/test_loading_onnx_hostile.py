"""A damaged or mismatched ONNX export is refused in one line when it is
opened: a graph ONNX Runtime cannot parse or run (truncated, empty, an IR or
opset it does not know, an unknown operator), external data that is missing,
short, or points outside the folder, and a config.json beside the graph that
describes another model (its buffers are sized from the config)."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
import torch

from core.errors import CorruptModelError, WorkbenchError
from core.models.loading import load_model
from core.onnx.export import export_onnx
from core.runtime.onnx.ort_errors import ort_reason


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory, tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    result = export_onnx(loaded, tmp_path_factory.mktemp("onnx") / "export")
    return result.folder


def _graph(folder):
    return onnx.load(str(folder / "model.onnx"), load_external_data=False)


def _external_location(folder, location):
    graph = _graph(folder)
    for tensor in graph.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(graph, str(folder / "model.onnx"))


def _opset(folder, version):
    graph = _graph(folder)
    graph.opset_import[0].version = version
    onnx.save(graph, str(folder / "model.onnx"))


def _unknown_op(folder):
    graph = _graph(folder)
    graph.graph.node[0].op_type = "NoSuchOp"
    onnx.save(graph, str(folder / "model.onnx"))


def _truncate(path, share):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])


def _config(folder, **fields):
    config = json.loads((folder / "config.json").read_text())
    config.update(fields)
    (folder / "config.json").write_text(json.dumps(config))


DAMAGE = {
    "garbage": (lambda f: (f / "model.onnx").write_bytes(b"not a graph" * 50), "Protobuf parsing"),
    "empty": (lambda f: (f / "model.onnx").write_bytes(b""), "No graph"),
    "truncated": (lambda f: _truncate(f / "model.onnx", 0.5), "Protobuf parsing"),
    "no-data": (lambda f: (f / "model.onnx.data").unlink(), "does not exist"),
    "short-data": (lambda f: _truncate(f / "model.onnx.data", 0.3), "out of bounds"),
    "escaping-data": (
        lambda f: _external_location(f, "../../../../../../etc/passwd"),
        "escapes model directory",
    ),
    "absolute-data": (lambda f: _external_location(f, "/etc/passwd"), "Absolute path"),
    "future-opset": (lambda f: _opset(f, 99), "Opset 99"),
    "unknown-op": (_unknown_op, "NoSuchOp"),
    "kv-heads": (lambda f: _config(f, num_key_value_heads=4), r"kv heads: graph 2, config 4"),
    "vocab": (lambda f: _config(f, vocab_size=100), r"vocabulary: graph \d+, config 100"),
    "head-size": (lambda f: _config(f, head_dim=10**9), "head size: graph 16"),
    "zero-heads": (lambda f: _config(f, num_attention_heads=0), "num_attention_heads is 0"),
    "fewer-layers": (lambda f: _config(f, num_hidden_layers=1), "layers: graph 2, config 1"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_export_is_refused_in_one_line(export_folder, tmp_path, damage):
    folder = tmp_path / "copy"
    shutil.copytree(export_folder, folder)
    spoil, said = DAMAGE[damage]
    spoil(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with pytest.raises(WorkbenchError, match=said) as refused:
        load_model(str(folder), device="cpu")
    message = str(refused.value)
    assert isinstance(refused.value, CorruptModelError)
    assert "\n" not in message and len(message) < 500
    assert "[ONNXRuntimeError]" not in message and ".cc:" not in message
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_the_undamaged_export_still_opens(export_folder):
    loaded = load_model(str(export_folder), device="cpu")
    assert "ONNX Runtime" in loaded.description.architecture


def test_ort_reason_keeps_the_reason_and_drops_the_source_location():
    class Fail(Exception):  # stands in for onnxruntime's pybind class
        pass

    err = Fail(
        "[ONNXRuntimeError] : 1 : FAIL : Load model from /x/model.onnx failed:"
        "/onnxruntime_src/onnxruntime/core/graph/model.cc:256 onnxruntime::Model::Model("
        "onnx::ModelProto&&, const onnxruntime::PathString&) Unsupported model IR version: 14"
    )
    assert ort_reason(err) == "Unsupported model IR version: 14"
    err = Fail(
        "[ONNXRuntimeError] : 1 : FAIL : Error: tensorprotoutils.cc:461 "
        "ValidateExternalDataPathFromDir External data path does not exist"
    )
    assert ort_reason(err) == "Error: External data path does not exist"


def _bigger_tokenizer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"w{i}": i for i in range(600)}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(folder)


def test_another_models_tokenizer_beside_the_graph_is_refused(export_folder, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(export_folder, folder)
    _bigger_tokenizer(folder)
    with pytest.raises(CorruptModelError, match="600 tokens but the model's embedding has 512"):
        load_model(str(folder), device="cpu")


def test_a_damaged_cache_entry_is_exported_again(tiny_llama_dir, tmp_path, monkeypatch):
    """A cache entry cut short since it was written is the workbench's own
    file: it is replaced once, not failed on at every run."""
    from core.onnx.cache import load_ort_version

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    first = load_ort_version(loaded, device="cpu")
    data = first.model.path.with_name("model.onnx.data")
    del first
    _truncate(data, 0.3)
    stages = []
    again = load_ort_version(loaded, device="cpu", progress=lambda p: stages.append(p.stage))
    assert any("damaged" in stage for stage in stages)
    ids = torch.tensor([[5, 17, 42, 7]])
    with torch.no_grad():
        want = loaded.model(ids).logits
    torch.testing.assert_close(again.model(ids).logits, want, atol=1e-4, rtol=0)


def test_half_written_copies_a_killed_export_left_are_removed(
    tiny_llama_dir, tmp_path, monkeypatch
):
    """SIGKILL runs no clean-up: its staging folder stays in the cache (each
    can be hundreds of MB). The next export of that entry, holding its lock,
    removes them; other entries' are left alone."""
    from core.onnx.cache import cached_onnx_export, export_key, graph_kind

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    root = tmp_path / "cache" / "onnx"
    name = f"{export_key(loaded.model, False, '', 0, False)}-{graph_kind(False, '', 0, False)}"
    killed = root / f".{name}.partial-abc123"
    other = root / ".someone-else.partial-xyz"
    for stale in (killed, other):
        stale.mkdir(parents=True)
        (stale / "model.onnx.data").write_bytes(b"half")
    folder = cached_onnx_export(loaded)
    assert folder.name == name
    assert not killed.exists() and other.exists()


def test_a_hub_id_in_the_hugging_face_cache_loads_without_the_network(tiny_llama_dir, tmp_path):
    """A snapshot already in the Hugging Face cache is loaded from there; with
    no network transformers retried each file's check for minutes first."""
    import os
    import shutil
    import time

    from tests.test_cli import run_cli

    hub = tmp_path / "hub"
    repo = hub / "models--someone--tiny-llama"
    shutil.copytree(tiny_llama_dir, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_HUB_CACHE": str(hub), "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    started = time.perf_counter()
    out = run_cli("info", "-m", "someone/tiny-llama", "--json", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert time.perf_counter() - started < 60
    assert "LlamaForCausalLM" in out.stdout
