"""The fused graph (onnxruntime-genai's builder, core.onnx.fused) on tiny
models of several families: attention is one GroupQueryAttention per layer,
the fp32 graph passes the export's strict fidelity gate (logits and a
token-by-token decode through its KV cache against PyTorch), greedy tokens
through our ONNX runner equal PyTorch's, the int8 / int4 graphs hold every
weight matrix in MatMulNBits blocks, a family the builder does not write is
refused in one line before any work, and a run on it exports the very graph
it was timed on."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from core.errors import UnsupportedModelError
from core.models.loading import load_model
from core.onnx.cache import cached_onnx_export, graph_digest
from core.onnx.export import MODEL_FILE, REPORT_FILE, export_onnx
from core.onnx.fused import HEAD_BITS
from core.onnx.nbits import BLOCK_SIZE
from core.runtime.registry import RUNTIMES
from tests.tiny_models import save_tiny_model


def _nodes(folder) -> list:
    return list(onnx.load(str(folder / MODEL_FILE), load_external_data=False).graph.node)


def _size(folder) -> int:
    return sum(p.stat().st_size for p in folder.glob(f"{MODEL_FILE}*"))


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, loaded):
    root = tmp_path_factory.mktemp("fused-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_CACHE_DIR", str(root))
        folders = {b: cached_onnx_export(loaded, weight_bits=b, fused=True) for b in (8, 4)}
        folders[0] = cached_onnx_export(loaded, fused=True)
        folders["traced"] = cached_onnx_export(loaded)
    return root, folders


def _greedy_torch(model, ids, steps: int) -> list[int]:
    out = model.generate(ids, max_new_tokens=steps, do_sample=False, min_new_tokens=steps)
    return out[0, ids.shape[1] :].tolist()


def _greedy_ort(folder, loaded, ids, steps: int) -> list[int]:
    from core.runtime.onnx.ort_model import OrtCausalLM
    from core.runtime.onnx.ort_runner import generate_steps

    model = OrtCausalLM(
        folder / MODEL_FILE, loaded.model.config, loaded.model.generation_config, "cpu"
    )
    return [s.token_id for s in generate_steps(model, ids, steps)]


def test_fp32_fused_graph_is_fused_and_passes_the_strict_gate(cache, loaded):
    folder = cache[1][0]
    assert folder.name.endswith("-fused-fp32")
    ops = [n.op_type for n in _nodes(folder)]
    layers = loaded.model.config.num_hidden_layers
    assert ops.count("GroupQueryAttention") == layers
    assert len(ops) < len(_nodes(cache[1]["traced"])) / 3  # far fewer nodes than our trace
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["fused"] and report["fidelity"]["passed"] and not report["int8"]


def test_greedy_tokens_through_the_runner_equal_pytorch(cache, loaded):
    ids = torch.tensor([[5, 17, 42, 7, 99, 3, 64, 12]])
    assert _greedy_ort(cache[1][0], loaded, ids, 12) == _greedy_torch(loaded.model, ids, 12)


def _decode(model, ids, past, steps: int) -> list[torch.Tensor]:
    """Logits of the prompt's last position, then of ``steps`` greedy tokens."""
    import numpy as np

    out = model.step(ids, past, np.array([ids.shape[1] - 1]))
    logits = [out.logits[0, -1]]
    for _ in range(steps):
        token = np.array([[int(logits[-1].argmax())]], dtype=np.int64)
        out = model.step(token, out.present, np.array([0]))
        logits.append(out.logits[0, -1])
    return logits


def test_cache_written_in_place_gives_the_copied_caches_logits(cache, loaded):
    from core.runtime.onnx.ort_model import OrtCausalLM, SharedCache

    config, generation = loaded.model.config, loaded.model.generation_config
    model = OrtCausalLM(cache[1][4] / MODEL_FILE, config, generation, "cpu")
    ids = torch.tensor([[5, 17, 42, 7, 99, 3, 64, 12]]).numpy()
    shared = model.empty_cache(capacity=ids.shape[1] + 6)
    assert isinstance(shared, SharedCache) and shared.length == 0
    copied = _decode(model, ids, model.empty_cache(), 6)
    in_place = _decode(model, ids, shared, 6)
    for a, b in zip(copied, in_place, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="holds 14 positions"):  # one token past its capacity
        _decode(model, ids, model.empty_cache(capacity=ids.shape[1] + 6), 7)


def test_steps_of_any_length_on_the_cache_written_in_place_match_the_copied_cache(cache, loaded):
    """The in-place cache keeps one IO binding for the whole sequence; a
    multi-token step between one-token steps (its logits a new output, then
    the bound buffer again) must still give the copied cache's logits, and
    logits handed out earlier must not change when the buffer is reused."""
    import numpy as np

    from core.runtime.onnx.ort_model import OrtCausalLM

    config, generation = loaded.model.config, loaded.model.generation_config
    model = OrtCausalLM(cache[1][4] / MODEL_FILE, config, generation, "cpu")
    chunks = [[5, 17, 42, 7, 99], [3], [64, 12, 8], [1], [77], [23, 9], [4]]
    results = {}
    for name, past in (("copied", model.empty_cache()), ("in_place", model.empty_cache(16))):
        logits = []
        for chunk in chunks:
            ids = np.array([chunk], dtype=np.int64)
            out = model.step(ids, past, np.arange(len(chunk)))
            logits.append(out.logits[0])  # every position of the chunk
            past = out.present
        results[name] = logits
    assert results["in_place"][1] is not results["in_place"][3]
    for a, b in zip(results["copied"], results["in_place"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_traced_graph_keeps_the_copied_cache(cache, loaded):
    from core.runtime.onnx.ort_model import OrtCausalLM

    config, generation = loaded.model.config, loaded.model.generation_config
    model = OrtCausalLM(cache[1]["traced"] / MODEL_FILE, config, generation, "cpu")
    assert isinstance(model.empty_cache(capacity=20), list)  # its graph concatenates


@pytest.mark.parametrize("bits", [8, 4])
def test_weight_only_fused_graphs_hold_every_matrix_in_blocks(cache, loaded, bits):
    folder = cache[1][bits]
    assert folder.name.endswith(f"-fused-int{bits}-weight-only")
    nodes = _nodes(folder)
    assert not [n for n in nodes if n.op_type == "MatMul"]  # the head included
    # fused QKV, o, gate, up, down per layer and the head (gate/up may be fused too)
    layers = loaded.model.config.num_hidden_layers
    nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
    assert 4 * layers + 1 <= len(nbits) <= 5 * layers + 1
    for node in nbits:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        head = node.input[1].startswith("lm_head.")  # int8 blocks under an int4 graph
        assert attrs["bits"] == (HEAD_BITS.get(bits, bits) if head else bits)
        assert attrs["block_size"] == BLOCK_SIZE
        assert attrs["accuracy_level"] == 4
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["weight_bits"] == bits and report["fused"] and report["fidelity"]["passed"]


def test_sizes_fall_with_the_bits(cache):
    fp32, w8, w4 = (_size(cache[1][b]) for b in (0, 8, 4))
    assert w4 < w8 < fp32


# The tiny Phi-3's context (256) differs from its original context (4096 by
# default): the builder then took it for long-context RoPE and failed.
# Llama 3.1/3.2's RoPE (wavelength-dependent scaling).
LLAMA3_ROPE = {
    "rope_type": "llama3", "rope_theta": 1e4, "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
}  # fmt: skip
# Partial rotary as in Phi-4-mini; the builder's rotary needs the rotated
# half-width in multiples of 8, so heads of 64 here (16 x 0.5 is refused by
# ONNX Runtime; Phi-4-mini's 128 x 0.75 takes it).
PHI3_PARTIAL_ROTARY = {
    "hidden_size": 128,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5},
}


GEMMA3_SCALED = {
    "rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
    }
}
WINDOW = {"sliding_window": 8}  # the gate's 256-token windows pass it many times over
QWEN_WINDOW = {"sliding_window": 8, "use_sliding_window": True, "max_window_layers": 1}


@pytest.mark.parametrize(
    ("family", "settings"),
    [
        ("qwen2", {}),
        ("qwen2", QWEN_WINDOW),
        ("qwen3", {}),
        ("mistral", {"sliding_window": None}),  # full attention
        ("mistral", WINDOW),  # every layer slides (Mistral v0.1)
        ("phi3", {}),
        ("phi3", WINDOW),  # Phi-3-mini-4k slides over 2,047 positions
        ("phi3", PHI3_PARTIAL_ROTARY),
        ("gemma", {}),
        ("gemma2", {}),  # sliding and full layers, soft-capping
        ("gemma3", {}),  # sliding and full layers, two RoPE thetas, q/k norms
        ("gemma3", GEMMA3_SCALED),  # linear RoPE on the global layers only (4B and up)
        ("granite", {}),
        ("ernie4_5", {}),
        ("llama", {"rope_parameters": LLAMA3_ROPE}),
    ],
)
def test_other_families_build_a_fused_graph_that_passes_the_gate(family, settings, tmp_path):
    folder = tmp_path / family
    saved = save_tiny_model(family, folder, **settings)
    loaded = load_model(str(saved), device="cpu")
    result = export_onnx(loaded, tmp_path / "fused", fused=True)
    assert result.fidelity.passed and result.fused
    assert "GroupQueryAttention" in {n.op_type for n in _nodes(tmp_path / "fused")}


def test_our_sliding_rope_tables_are_the_builders_where_nothing_is_scaled(tmp_path):
    """core.onnx.fused_rope rewrites Gemma 3's sliding-layer tables when its
    global layers are scaled; unscaled, the builder's tables must be ours."""
    from onnx import numpy_helper

    from core.onnx.fused import build_fused_graph
    from core.onnx.fused_rope import LOCAL_TABLES, sliding_rope_tables

    loaded = load_model(str(save_tiny_model("gemma3", tmp_path / "gemma3")), device="cpu")
    config = loaded.model.config
    build_fused_graph(loaded.model, loaded.tokenizer, tmp_path / "fused" / MODEL_FILE, 0)
    graph = onnx.load(str(tmp_path / "fused" / MODEL_FILE)).graph
    theirs = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name in LOCAL_TABLES}
    theta = config.rope_parameters["sliding_attention"]["rope_theta"]
    ours = sliding_rope_tables(theta, config.head_dim, config.max_position_embeddings)
    assert set(theirs) == set(LOCAL_TABLES)
    for name in LOCAL_TABLES:
        torch.testing.assert_close(torch.from_numpy(theirs[name]), ours[name], atol=1e-6, rtol=0)


def test_sliding_windows_decode_past_the_window_on_both_caches(tmp_path):
    """Gemma 2 (a window of 8) decoded 24 tokens after a 40-token prompt, on
    the copied cache and on the cache written in place: PyTorch's logits."""
    from core.runtime.onnx.ort_model import OrtCausalLM

    loaded = load_model(str(save_tiny_model("gemma2", tmp_path / "gemma2")), device="cpu")
    export_onnx(loaded, tmp_path / "fused", fused=True)
    config, generation = loaded.model.config, loaded.model.generation_config
    model = OrtCausalLM(tmp_path / "fused" / MODEL_FILE, config, generation, "cpu")
    ids = torch.randint(5, 200, (1, 40), generator=torch.Generator().manual_seed(0))
    out = loaded.model.generate(
        ids, max_new_tokens=24, min_new_tokens=24, do_sample=False,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    want = [logits[0] for logits in out.logits]
    tokens = torch.cat([ids, out.sequences[:, 40:-1]], dim=1)
    for past in (model.empty_cache(), model.empty_cache(capacity=64)):
        got = _decode_tokens(model, tokens, 40, past)
        for a, b in zip(want, got, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def _decode_tokens(model, tokens, prompt: int, past) -> list[torch.Tensor]:
    """Logits after the prompt, then after each following token, one at a time."""
    import numpy as np

    ids = tokens.numpy()
    out = model.step(ids[:, :prompt], past, np.array([prompt - 1]))
    logits = [out.logits[0, -1]]
    for index in range(prompt, ids.shape[1]):
        out = model.step(ids[:, index : index + 1], out.present, np.array([0]))
        logits.append(out.logits[0, -1])
    return logits


@pytest.mark.parametrize(
    ("family", "settings", "says"),
    [
        ("gpt2", {}, "not 'gpt2'"),
        ("olmo", {}, "not 'olmo'"),
    ],
)
def test_families_it_cannot_build_exactly_are_refused_in_one_line(family, settings, says, tmp_path):
    from core.jobs.on_runtime import check_exportable

    loaded = load_model(str(save_tiny_model(family, tmp_path / family, **settings)), device="cpu")
    with pytest.raises(UnsupportedModelError) as err:
        check_exportable("ort-fused-w4", loaded)
    assert says in str(err.value) and "\n" not in str(err.value)
    check_exportable("ort-w4", loaded)  # the traced graph takes it
    with pytest.raises(UnsupportedModelError):
        export_onnx(loaded, tmp_path / "out", fused=True)
    assert not (tmp_path / "out").exists()  # nothing written


def test_int8_activations_are_not_a_fused_graph(loaded, tmp_path):
    with pytest.raises(ValueError, match="fused"):
        export_onnx(loaded, tmp_path / "a", int8=True, fused=True)


def test_runtimes_are_registered():
    assert RUNTIMES["ort-fused"].fused and RUNTIMES["ort-fused"].weight_bits == 0
    assert RUNTIMES["ort-fused-w8"].weight_bits == 8 and RUNTIMES["ort-fused-w8"].fused
    assert RUNTIMES["ort-fused-w4"].weight_bits == 4 and RUNTIMES["ort-fused-w4"].onnx


def test_floor_counts_the_rotary_tables_a_row_at_a_time(cache):
    """GroupQueryAttention reads a row of its cos / sin tables per position:
    they are not part of the bytes a decode step must read."""
    from core.measure.decode_floor import _graph_bytes_read

    folder = cache[1][4]
    graph = onnx.load(str(folder / MODEL_FILE), load_external_data=False).graph
    rotary = {n.input[7] for n in graph.node if n.op_type == "GroupQueryAttention"}
    assert rotary  # the builder's cos_cache / sin_cache
    total = _size(folder)
    assert _graph_bytes_read(folder / MODEL_FILE) < total


def test_cli_bench_on_the_fused_int4_graph(cache, tiny_llama_dir, monkeypatch, capsys):
    from core.cli.main import main

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(cache[0]))
    args = ["bench", "-m", str(tiny_llama_dir), "--backend", "ort-fused-w4", "--json"]
    args += ["--prompt-tokens", "8", "--new-tokens", "3", "--min-repeats", "1", "--min-time", "0"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["environment"]["runner"] == "onnxruntime-cpu-fused-weight-only"


def test_a_fused_run_exports_the_graph_it_was_timed_on(loaded, cache, tmp_path, monkeypatch):
    from core.jobs.export import ExportRequest, export
    from core.jobs.run import RunRequest, run
    from core.passes.recipe import Recipe
    from core.results.store import RunRecord
    from tests.test_provenance import SETTINGS

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(cache[0]))
    events = list(run(RunRequest(loaded, Recipe(), "ort-fused-w8", settings=SETTINGS)))
    record = next(e for e in events if isinstance(e, RunRecord))
    assert record.artifact["onnx_fused"]["precision"] == "int8"
    assert record.artifact["onnx_sha256"] == graph_digest(cache[1][8])
    out = tmp_path / "export"
    list(export(ExportRequest(loaded, out, ("hf",), record)))
    assert graph_digest(out / "onnx-fused-int8-weight-only") == record.artifact["onnx_sha256"]


def test_without_the_builder_installed_it_says_how_to_install_it(loaded, monkeypatch):
    import importlib.util

    from core.jobs.on_runtime import check_exportable

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime_genai" else real(name, *a),
    )
    with pytest.raises(UnsupportedModelError, match="pip install --no-deps 'onnxruntime-genai"):
        check_exportable("ort-fused", loaded)


def _logit_error(folder, loaded, ids) -> float:
    from core.runtime.onnx.ort_model import OrtCausalLM

    model = OrtCausalLM(
        folder / MODEL_FILE, loaded.model.config, loaded.model.generation_config, "cpu"
    )
    with torch.no_grad():
        want = loaded.model(ids).logits
    return (model(ids).logits - want).abs().mean().item()


def test_k_quant_blocks_carry_zero_points_and_fit_the_weights_closer(loaded, tmp_path):
    """llama.cpp's k-quant search (asymmetric, least squares per block) against
    ONNX Runtime's symmetric round to nearest, both through the builder."""
    from core.onnx.fused import build_fused_graph, fused_settings

    ids = torch.randint(
        0, loaded.model.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0)
    )
    errors = {}
    for method in ("default", "k_quant"):
        path = tmp_path / method / MODEL_FILE
        build_fused_graph(loaded.model, loaded.tokenizer, path, 4, method)
        nbits = [n for n in _nodes(path.parent) if n.op_type == "MatMulNBits"]
        layers = [n for n in nbits if not n.input[1].startswith("lm_head.")]  # int8 head: none
        with_zero_points = [len(n.input) > 3 and bool(n.input[3]) for n in layers]
        assert all(with_zero_points) if method == "k_quant" else not any(with_zero_points)
        errors[method] = _logit_error(path.parent, loaded, ids)
    assert errors["k_quant"] < errors["default"]
    assert fused_settings(4, "k_quant")["symmetric"] is False
    with pytest.raises(ValueError, match="k_quant"):
        fused_settings(4, "hqq")


def test_the_block_size_reaches_every_matmulnbits_and_the_cache_key(loaded, tmp_path):
    from core.onnx.fused import BLOCK_SIZES, build_fused_graph, fused_settings

    path = tmp_path / "b64" / MODEL_FILE
    build_fused_graph(loaded.model, loaded.tokenizer, path, 8, block=64)
    nbits = [n for n in _nodes(path.parent) if n.op_type == "MatMulNBits"]
    blocks = {a.i for n in nbits for a in n.attribute if a.name == "block_size"}
    assert nbits and blocks == {64}
    assert fused_settings(8, block=64)["block_size"] == 64
    assert fused_settings(8)["block_size"] == BLOCK_SIZES[8]
    with pytest.raises(ValueError, match="powers of two"):
        fused_settings(4, block=48)


def test_greedy_decode_timing_runs_on_both_caches(cache, loaded):
    from core.measure.ort_decode import greedy_decode_ms
    from core.runtime.onnx.ort_model import OrtCausalLM

    folder = cache[1][4]
    model = OrtCausalLM(
        folder / MODEL_FILE, loaded.model.config, loaded.model.generation_config, "cpu"
    )
    prompt = torch.arange(10, 18)[None].numpy()
    for in_place in (True, False):
        assert greedy_decode_ms(model, 3, in_place, prompt) > 0
