"""A quantised graph holds no fp32 weight matrix outside the embedding.

Two layouts used to slip past ONNX Runtime's quantisers and stay fp32 under
an int8 / int4 name: a linear layer the exporter writes as ``Gemm`` (GPT-2's
Conv1D, a mixture of experts' router and shared expert: MatMulNBits takes
``MatMul`` only), and the experts of a mixture, read from one 3-D tensor
through ``Gather`` (no quantiser takes them). ``core.onnx.gemm_as_matmul``
and ``core.onnx.expert_slices`` store both as plain matrices first."""

from __future__ import annotations

import onnx
import pytest

from core.models.loading import load_model
from core.onnx.export import export_onnx
from tests.tiny_models import save_tiny_model

QUANTISED = {"int8": {"int8": True}, "w8": {"weight_bits": 8}, "w4": {"weight_bits": 4}}


def fp32_matrices(model_file) -> dict[str, set[str]]:
    """fp32 stored tensors of 2 or more dimensions (both > 1), each with the
    ops that read it; block scales excluded."""
    graph = onnx.load(str(model_file), load_external_data=False).graph
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    return {
        tensor.name: readers.get(tensor.name, set())
        for tensor in graph.initializer
        if tensor.data_type == onnx.TensorProto.FLOAT
        and len(tensor.dims) >= 2
        and min(tensor.dims) > 1
        and not tensor.name.endswith("_scales")
    }


@pytest.fixture(scope="module", params=["gpt2", "qwen2_moe"])
def family(request, tmp_path_factory):
    folder = save_tiny_model(request.param, tmp_path_factory.mktemp(request.param) / "model")
    return request.param, load_model(str(folder), device="cpu")


@pytest.mark.parametrize("kind", list(QUANTISED))
def test_every_weight_matrix_is_quantised(family, kind, tmp_path):
    name, loaded = family
    result = export_onnx(loaded, tmp_path / "export", **QUANTISED[kind])
    assert result.fidelity.passed
    left = fp32_matrices(result.model_file)
    # int8 graphs keep the embeddings in fp32 (read by Gather, not a matmul:
    # GPT-2's tokens and learned positions); the int4 graph quantises them too.
    embeddings = {tensor for tensor, ops in left.items() if ops == {"Gather"}}
    allowed = embeddings if kind != "w4" else set()
    assert set(left) == allowed, f"{name} {kind}: fp32 left {sorted(set(left) - allowed)}"
    assert len(allowed) <= 2


def test_the_fp32_graph_stores_each_expert_once(family, tmp_path):
    """Slicing the experts' 3-D tensors, or rewriting a Gemm, stores the same
    bytes, not twice: the tensors nobody reads any more are dropped."""
    name, loaded = family
    implementation = loaded.model.config._experts_implementation
    result = export_onnx(loaded, tmp_path / "export")
    # The traced form of the experts was the export's alone.
    assert loaded.model.config._experts_implementation == implementation
    graph = onnx.load(str(result.model_file), load_external_data=False).graph
    stored = sum(4 * _count(tensor.dims) for tensor in graph.initializer)
    weights = sum(p.numel() for p in loaded.model.parameters()) * 4
    head = loaded.model.get_input_embeddings().weight.numel() * 4
    # The tied head is stored once more, pre-transposed (a few small
    # constants besides); nothing else is.
    assert weights < stored < weights + head + 4096, name


def _count(dims) -> int:
    count = 1
    for size in dims:
        count *= size
    return count
