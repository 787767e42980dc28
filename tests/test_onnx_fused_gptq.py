"""GPTQ rounding of the fused graph's int4 blocks (core.onnx.fused_gptq): the
packed blocks are what ONNX Runtime's own kernel multiplies, every decoder
matrix of each fused family gets them (with zero points) while the head keeps
the builder's, the result fits the float model closer than round to nearest,
and a cancelled build writes nothing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from core.errors import Cancelled
from core.models.loading import load_model
from core.onnx.export import MODEL_FILE
from core.onnx.fused import build_fused_graph
from core.progress import CancelToken
from tests.tiny_models import save_tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


PARAGRAPH = (
    "The river rose after three days of rain in the valley, and the farmers moved their "
    "animals to the high pasture before the bridge was closed. By the fourth morning the "
    "water had reached the mill, where the old stones still turned when the current was "
    "strong enough, and the miller counted the sacks he could carry to the loft."
)


def _matmulnbits(path) -> list:
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n for n in graph.node if n.op_type == "MatMulNBits"]


def _has_zero_points(node) -> bool:
    return len(node.input) > 3 and bool(node.input[3])


def test_gptq_grid_with_integer_zero_points_spans_zero():
    from core.passes.gptq import gptq_quantize

    torch.manual_seed(0)
    weight = torch.randn(12, 64) + torch.linspace(-1, 2, 12)[:, None]  # some rows all positive
    x = torch.randn(256, 64)
    q, scale, minimum = gptq_quantize(weight, x.T @ x / 256, 32, integer_zero=True)
    zero = -minimum / scale
    assert torch.allclose(zero, zero.round(), atol=1e-4)
    assert zero.round().min() >= 0 and zero.round().max() <= 15
    assert q.min() >= 0 and q.max() <= 15
    rebuilt = q.float() * scale.repeat_interleave(32, 1) + minimum.repeat_interleave(32, 1)
    assert (rebuilt - weight).abs().max() < scale.max()  # within a step of the grid


@pytest.mark.parametrize("k", [96, 64])  # an odd and an even number of blocks
def test_packed_blocks_are_what_onnx_runtime_multiplies(k):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from core.onnx.fused_gptq import pack_blocks

    n, block = 8, 32
    generator = torch.Generator().manual_seed(1)
    q = torch.randint(0, 16, (n, k), generator=generator, dtype=torch.int32)
    scale = torch.rand(n, k // block, generator=generator) + 0.1
    minimum = -torch.randint(0, 16, (n, k // block), generator=generator) * scale
    packed, scales, zero_points = pack_blocks(q, scale, minimum, block)
    node = helper.make_node(
        "MatMulNBits", ["x", "b", "s", "z"], ["y"], domain="com.microsoft",
        K=k, N=n, bits=4, block_size=block, accuracy_level=1,  # fp32 compute: exact
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(a, name) for a, name in ((packed, "b"), (scales, "s"))]
        + [numpy_helper.from_array(zero_points, "z")],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)],
        ir_version=10,
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((1, k)).astype(np.float32)
    weight = q.float() * scale.repeat_interleave(block, 1) + minimum.repeat_interleave(block, 1)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ weight.numpy().T, atol=1e-4)


def _logit_error(path, loaded, ids) -> float:
    from core.runtime.onnx.ort_model import OrtCausalLM

    model = OrtCausalLM(path, loaded.model.config, loaded.model.generation_config, "cpu")
    with torch.no_grad():
        want = loaded.model(ids).logits
    return (model(ids).logits - want).abs().mean().item()


def test_gptq_rounds_every_decoder_matrix_and_fits_the_model_closer(loaded, tmp_path):
    texts = tiny_tokenizer()("The river rose after three days of rain in the valley.")
    ids = torch.tensor([texts.input_ids * 3])
    errors = {}
    for method in ("default", "gptq"):
        path = tmp_path / method / MODEL_FILE
        build_fused_graph(loaded.model, loaded.tokenizer, path, 4, method)
        nodes = _matmulnbits(path)
        head = [n for n in nodes if n.input[1].startswith("lm_head")]
        layers = [n for n in nodes if n not in head]
        assert len(head) == 1 and layers
        assert all(map(_has_zero_points, layers)) == (method == "gptq")
        assert not _has_zero_points(head[0])  # the head (and tied embedding) keep the builder's
        errors[method] = _logit_error(path, loaded, ids)
    assert errors["gptq"] < errors["default"]


def test_a_cancelled_gptq_build_writes_nothing(loaded, tmp_path):
    cancel = CancelToken()
    seen = []

    def progress(p):
        seen.append(p.stage)
        if p.stage.startswith("GPTQ: int4 blocks of matrix 1 of"):
            cancel.cancel()

    target = tmp_path / "out" / MODEL_FILE
    with pytest.raises(Cancelled):
        build_fused_graph(loaded.model, loaded.tokenizer, target, 4, "gptq", None, cancel, progress)
    assert any(m.startswith("GPTQ: int4 blocks of matrix 1 of") for m in seen)
    assert not target.parent.exists()


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "mistral", "phi3", "gemma2", "gemma3"])
def test_other_fused_families_get_gptq_blocks_in_every_layer(family, tmp_path):
    """Phi-3 keeps q/k/v and gate/up fused in its linears; the builder splits
    gate/up, so its blocks come from halves of gate_up_proj's rows: the wrong
    rows would fit worse than round to nearest."""
    window = {"sliding_window": None} if family == "mistral" else {}  # full attention
    model = load_model(str(save_tiny_model(family, tmp_path / family, **window)), device="cpu")
    ids = torch.tensor([tiny_tokenizer()(PARAGRAPH).input_ids])  # 8 tokens were too noisy
    errors = {}
    for method in ("default", "gptq"):
        path = tmp_path / method / MODEL_FILE
        build_fused_graph(model.model, model.tokenizer, path, 4, method)
        layers = [n for n in _matmulnbits(path) if not n.input[1].startswith("lm_head")]
        assert layers and all(map(_has_zero_points, layers)) == (method == "gptq")
        errors[method] = _logit_error(path, model, ids)
    assert errors["gptq"] < errors["default"]


def test_a_split_graph_matrix_takes_its_part_of_a_fused_linear(tmp_path):
    from core.onnx.fused_gptq import layer_matrices

    model = load_model(str(save_tiny_model("phi3", tmp_path / "phi3")), device="cpu").model
    path = tmp_path / "fused" / MODEL_FILE
    build_fused_graph(model, tiny_tokenizer(), path, 4, "default")
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {n.name: n.input[1] for n in graph.node if n.op_type == "MatMulNBits"}
    found = layer_matrices(graph, model)
    layer0 = {weights[name]: rows for name, rows in found.items() if ".layers.0." in weights[name]}
    by_part = {weight.split(".")[4]: rows for weight, rows in layer0.items()}
    gate_up = model.model.layers[0].mlp.gate_up_proj.weight
    half = gate_up.shape[0] // 2
    assert torch.equal(by_part["gate_proj"][0].weight, gate_up[:half])
    assert torch.equal(by_part["up_proj"][0].weight, gate_up[half:])
    qkv = model.model.layers[0].self_attn.qkv_proj.weight
    assert torch.equal(by_part["qkv_proj"][0].weight, qkv)
    assert len(found) == 5 * model.config.num_hidden_layers  # qkv, o, gate, up, down


def test_statistics_collected_in_chunks_give_the_same_blocks(loaded, tmp_path, monkeypatch):
    """A model whose Hessians do not fit at once is calibrated in several
    passes (here one node per pass) and must get exactly the same blocks."""
    import core.onnx.fused_gptq as fused_gptq

    def blocks(folder, budget):
        monkeypatch.setattr(fused_gptq, "HESSIAN_BUDGET_BYTES", budget)
        passes = []

        def progress(p):
            passes.append(p.stage == "GPTQ: collecting calibration statistics")

        path = tmp_path / folder / MODEL_FILE
        build_fused_graph(loaded.model, loaded.tokenizer, path, 4, "gptq", progress=progress)
        graph = onnx.load(str(path))
        arrays = {i.name: onnx.numpy_helper.to_array(i) for i in graph.graph.initializer}
        return arrays, sum(passes)

    together, one_pass = blocks("together", fused_gptq.HESSIAN_BUDGET_BYTES)
    apart, many = blocks("apart", 1)
    nodes = [n for n in _matmulnbits(tmp_path / "apart" / MODEL_FILE) if "layers" in n.name]
    inputs = {n.input[0] for n in nodes}  # gate and up read one tensor: one Hessian
    assert one_pass == 1 and many == len(inputs) > 1 and len(inputs) < len(nodes)
    assert together.keys() == apart.keys()
    for name, array in together.items():
        np.testing.assert_array_equal(array, apart[name], err_msg=name)


def test_progress_says_how_far_in_a_bounded_number_of_lines(loaded, tmp_path, monkeypatch):
    import core.onnx.fused_gptq as fused_gptq

    monkeypatch.setattr(fused_gptq, "PROGRESS_STEPS", 2)
    stages = []
    path = tmp_path / "g" / MODEL_FILE
    build_fused_graph(loaded.model, loaded.tokenizer, path, 4, "gptq", progress=stages.append)
    matrices = len([n for n in _matmulnbits(path) if "layers" in n.name])
    lines = [p.stage for p in stages if p.stage.startswith("GPTQ: int4 blocks")]
    assert matrices > 2 and len(lines) in (2, 3)  # every half, and the last
    assert lines[-1] == f"GPTQ: int4 blocks of matrix {matrices} of {matrices}"
    fractions = [p.fraction for p in stages if p.stage.startswith("GPTQ: int4 blocks")]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(0.9)
