"""The int4 fused graph's head in int8 blocks (core.onnx.fused_head): the
head node multiplies ONNX Runtime's own int8 blocks of the float head, a
tied embedding gathers the very same blocks (no int4 copy is left), an
untied embedding keeps its own, and the graph fits the float model closer
than with the builder's int4 head."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from core.models.loading import load_model
from core.onnx.export import MODEL_FILE
from core.onnx.fused import build_fused_graph, fused_settings
from core.onnx.fused_head import int8_head_blocks
from core.runtime.onnx.ort_model import OrtCausalLM
from tests.test_onnx_fused_gptq import PARAGRAPH, _logit_error
from tests.tiny_models import save_tiny_model, tiny_tokenizer


def _graph(path):
    return onnx.load(str(path), load_external_data=False).graph


def _bits(node) -> int:
    return next(a.i for a in node.attribute if a.name == "bits")


@pytest.mark.parametrize("tied", [True, False])
def test_the_head_takes_int8_blocks_and_fits_the_model_closer(tied, tmp_path):
    folder = save_tiny_model("llama", tmp_path / "m", tie_word_embeddings=tied)
    loaded = load_model(str(folder), device="cpu")
    ids = torch.tensor([tiny_tokenizer()(PARAGRAPH).input_ids])
    errors = {}
    for head_bits in (4, 8):
        path = tmp_path / f"h{head_bits}" / MODEL_FILE
        build_fused_graph(loaded.model, loaded.tokenizer, path, 4, "default", head_bits=head_bits)
        errors[head_bits] = _logit_error(path, loaded, ids)
    graph = _graph(tmp_path / "h8" / MODEL_FILE)
    (head,) = [n for n in graph.node if n.op_type == "MatMulNBits" and "lm_head" in n.input[1]]
    layers = [n for n in graph.node if n.op_type == "MatMulNBits" and n is not head]
    assert _bits(head) == 8 and layers and all(_bits(n) == 4 for n in layers)
    stored = {i.name: i for i in onnx.load(str(tmp_path / "h8" / MODEL_FILE)).graph.initializer}
    blocks, scales = int8_head_blocks(loaded.model.lm_head.weight, 32, 4)
    np.testing.assert_array_equal(numpy_helper.to_array(stored[head.input[1]]), blocks)
    np.testing.assert_array_equal(numpy_helper.to_array(stored[head.input[2]]), scales)
    gathers = [n for n in graph.node if n.op_type == "GatherBlockQuantized"]
    if tied:  # the embedding reads the head's int8 blocks; the int4 ones are gone
        (gather,) = gathers
        (reshape,) = [n for n in graph.node if n.output[0] == gather.input[0]]
        assert reshape.input[0] == head.input[1] and gather.input[2] == head.input[2]
        assert _bits(gather) == 8
        assert not [name for name in stored if name.startswith("lm_head") and "Q4" in name]
    else:
        assert all(head.input[1] not in n.input for n in graph.node if n is not head)
    assert errors[8] < errors[4]
    opened = OrtCausalLM(tmp_path / "h8" / MODEL_FILE, loaded.model.config, None, "cpu")
    assert opened.weight_bits == 4  # the body's bits, not the head's (a loaded graph's runtime)


def test_a_head_in_the_graphs_own_bits_keeps_the_older_settings():
    assert fused_settings(4)["head_bits"] == 8
    assert "head_bits" not in fused_settings(4, head_bits=4)  # the cache key it had before
    assert "head_bits" not in fused_settings(8)
    with pytest.raises(ValueError, match="head takes"):
        fused_settings(8, head_bits=4)
