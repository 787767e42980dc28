"""The ONNX graph of a decoder LM with a KV cache: one graph for prefill and decode.

Graph inputs (batch 1):
  input_ids          int64 [1, seq]          the new tokens
  attention_mask     int64 [1, past + seq]   all ones (no padding at batch 1)
  logits_positions   int64 [n]               which of the new positions get logits
  past_key_values.{i}.key / .value  float [1, kv_heads, past, head_dim]  (past may be 0)
Graph outputs:
  logits             float [1, n, vocab]
  present.{i}.key / .value          float [1, kv_heads, past + seq, head_dim]

``logits_positions`` is the graph's form of transformers' ``logits_to_keep``
(which accepts a tensor of indices): decode and prefill ask for the last
position only, as our PyTorch runner does, and perplexity/fidelity ask for
every position, so one graph serves all three without paying for the LM head
where nothing is read.

The model itself is traced by ``torch.onnx.export(dynamo=True)`` through a
small wrapper that turns the flat past tensors into transformers' own
``DynamicCache`` and the updated cache back into flat tensors; transformers
builds the causal (and sliding-window) mask and positions from the cache
length as it does in ``generate``. The families it is made for are in
``core.runtime.onnx.families``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.onnx.dense_experts import traceable_experts
from core.onnx.expert_slices import fold_expert_slices
from core.onnx.gemm_as_matmul import gemm_as_matmul
from core.onnx.stored import drop_unread, store
from core.runtime.onnx.interface import (  # noqa: F401 (the graph's names, re-exported)
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    LOGITS_POSITIONS,
    SUPPORTED_MODEL_TYPES,
    layer_count,
    past_names,
    present_names,
)


class FlatCacheLM(torch.nn.Module):
    """The HF model with flat tensors in and out, the form an ONNX graph needs."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.layers = layer_count(model.config)

    def forward(self, input_ids, attention_mask, logits_positions, *past):
        from transformers import DynamicCache

        # Every layer keeps its whole cache, sliding-window layers too: transformers'
        # sliding cache (DynamicCache(config=...)) crops itself to the window, and a
        # graph fed that cropped cache back counts positions from what it holds
        # (core.runtime.onnx.families). The sliding mask comes from the config.
        cache = DynamicCache()
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            cache=cache,
            use_cache=True,
            logits_to_keep=logits_positions,
        )
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def cache_shapes(model) -> list[tuple[int, int]]:
    """(kv_heads, head_dim) of each past tensor, keys and values in turn, as
    the model itself fills its cache on one token. Families name and derive
    their KV heads in their own ways (Falcon's multi-query, GPT-BigCode's
    ``multi_query``, a config carrying a field its family never reads), so
    the traced inputs take the shapes from the model, not the config."""
    from transformers import DynamicCache

    with torch.no_grad():
        out = model(
            input_ids=torch.zeros(1, 1, dtype=torch.long), cache=DynamicCache(), use_cache=True
        )
    shapes = []
    for layer in out.past_key_values.layers:
        shapes += [(layer.keys.shape[1], layer.keys.shape[3])]
        shapes += [(layer.values.shape[1], layer.values.shape[3])]
    return shapes


def sample_inputs(model, past: int = 3, seq: int = 2) -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing: past and seq both > 1 so neither is specialised."""
    ids = torch.zeros(1, seq, dtype=torch.long)
    mask = torch.ones(1, past + seq, dtype=torch.long)
    positions = torch.arange(seq, dtype=torch.long)
    cache = [torch.zeros(1, heads, past, size) for heads, size in cache_shapes(model)]
    return (ids, mask, positions, *cache)


def untie_transposed_weights(graph) -> int:
    """Give every ``Transpose`` of a weight its own, already transposed, weight.

    A tied LM head is the embedding matrix read twice: by a ``Gather`` (the
    embedding) and, transposed, by the head's ``MatMul``. The exporter's
    constant folding leaves that ``Transpose`` in the graph because the
    matrix is shared, so every decode step would transpose the whole
    vocab x hidden matrix, and int8 quantisation, which only quantises a
    ``MatMul`` whose weight is a stored tensor, would skip the largest layer.
    Storing the head untied and pre-transposed costs its bytes once more on
    disk and removes both problems. Returns how many weights were untied.
    """
    import numpy as np
    import onnx_ir as ir

    untied = 0
    for node in list(graph):
        if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx"):
            continue
        source = node.inputs[0]
        if source is None or not source.is_initializer() or source.const_value is None:
            continue
        perm = node.attributes.get_ints("perm", None)
        array = source.const_value.numpy()
        transposed = np.ascontiguousarray(np.transpose(array, perm))
        weight = store(graph, f"{source.name}.transposed", transposed, source.dtype)
        ir.convenience.replace_all_uses_with(node.outputs[0], weight)
        graph.remove(node, safe=True)
        if source.uses():  # still read as it was (the embedding): stored twice
            untied += 1
        else:  # read only transposed (an expert's slice): stored once
            drop_unread(graph, [source])
    return untied


def export_graph(model, path: Path) -> int:
    """Trace ``model`` (fp32, CPU) and save the graph to ``path``, weights in
    ``path.name + '.data'`` beside it (past protobuf's 2 GB limit too).
    Returns how many transposed weights (a tied head) were stored untied."""
    import onnx_ir as ir
    from torch.export import Dim

    layers = layer_count(model.config)
    seq, past, total, kept = Dim("seq"), Dim("past"), Dim("total"), Dim("kept")
    dynamic = (
        {1: seq},
        {1: total},
        {0: kept},
        tuple({2: past} for _ in range(2 * layers)),  # the *past arguments, as one entry
    )
    with traceable_experts(model):  # mixtures of experts: a form torch.export takes
        program = torch.onnx.export(
            FlatCacheLM(model).eval(),
            sample_inputs(model),
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=[INPUT_IDS, ATTENTION_MASK, LOGITS_POSITIONS, *past_names(layers)],
            output_names=[LOGITS, *present_names(layers)],
            verbose=False,
        )
    fold_expert_slices(program.model.graph)
    gemm_as_matmul(program.model.graph)
    untied = untie_transposed_weights(program.model.graph)
    ir.save(program.model, path, external_data=f"{path.name}.data")
    return untied
