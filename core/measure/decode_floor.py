"""The floor a decode step cannot beat on this machine: the bytes of weights
one step must read, over the memory bandwidth measured here.

A decode step of batch 1 multiplies one row of activations by every weight
matrix once, so it reads every weight byte once (the token embedding is the
exception: one row of it is gathered, unless the head reads the same matrix).
At small batch the arithmetic is far cheaper than the reading, so
bytes / bandwidth is the time a perfect kernel would need; a runtime's ratio
to it says how much is left to win.
"""

from __future__ import annotations

import time
from pathlib import Path

EMBEDDING_OPS = {"Gather", "GatherBlockQuantized"}
# Inputs that fused attention reads a row per position of (its rotary tables):
# op type -> input indices (ONNX Runtime's contrib op schemas).
ROW_READ_INPUTS = {"GroupQueryAttention": (7, 8), "RotaryEmbedding": (2, 3)}


def memory_bandwidth_bytes_per_s(size_bytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """The fastest of a few large copies and large reads (torch's parallel
    kernels, all its threads), each of ``size_bytes``, far more than any cache
    holds. A copy moves 2x its size; a read (a sum) moves its size and is the
    access a decode step makes. Until session 18 only copies were timed: on
    the 2-core Zen 4 VM they gave 32-49 GB/s where reads gave 36-57, so the
    floor was that much looser than the machine allows."""
    import torch

    src = torch.ones(size_bytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    best_copy = best_read = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best_copy = min(best_copy, time.perf_counter() - start)
        start = time.perf_counter()
        src.sum()
        best_read = min(best_read, time.perf_counter() - start)
    return max(2 * size_bytes / best_copy, size_bytes / best_read)


def bytes_read_per_token(model) -> int:
    """Weight bytes one decode step reads: a PyTorch model's stored tensors,
    or an ONNX Runtime model's graph initializers, less a token embedding that
    only gathers rows (a tied head that reads it whole keeps it counted), and
    of a mixture's experts only the ones its router picks for the token."""
    from core.runtime.runners import is_onnx_runtime

    if is_onnx_runtime(model):
        return _graph_bytes_read(Path(model.path))
    return _torch_bytes_read(model)


def _torch_bytes_read(model) -> int:
    from torch import nn

    from core.models.description import unique_tensors_of
    from core.models.quantized_embedding import Int4Embedding, Int8Embedding

    token_tables = (nn.Embedding, Int8Embedding, Int4Embedding)  # gather rows

    def key(t):
        return (t.untyped_storage().data_ptr(), t.storage_offset())

    embedding_only: set = set()
    everything_else: set = set()
    for module in model.modules():
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        is_embedding = isinstance(module, token_tables)
        (embedding_only if is_embedding else everything_else).update(key(t) for t in own)
    tensors = unique_tensors_of([*model.parameters(), *model.buffers()])
    share = _expert_shares(model, key)
    return round(
        sum(
            t.numel() * t.element_size() * share.get(key(t), 1.0)
            for t in tensors
            if key(t) not in embedding_only or key(t) in everything_else
        )
    )


def _expert_shares(model, key) -> dict:
    """A mixture of experts' expert tensors -> the share of them one token
    reads: its router's top k of all experts (transformers' experts layers:
    one 3-D tensor per projection, experts along the first axis). In an
    exported graph every expert runs (core.onnx.dense_experts), so graphs
    count them whole."""
    config = getattr(model, "config", None)
    text = getattr(config, "get_text_config", lambda: config)() if config else None
    top_k = getattr(text, "num_experts_per_tok", None) or getattr(text, "top_k", None)
    from core.models.experts import experts_layers

    if not top_k:
        return {}
    return {
        key(tensor): min(1.0, top_k / layer.num_experts)
        for layer in experts_layers(model)
        for tensor in layer.parameters(recurse=False)
        if tensor.dim() >= 2 and tensor.shape[0] == layer.num_experts
    }


def _graph_bytes_read(path: Path) -> int:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {t.name: _initializer_bytes(t) for t in graph.initializer}
    gathered = {n.input[0] for n in graph.node if n.op_type in EMBEDDING_OPS and n.input}
    rows = {
        n.input[i]
        for n in graph.node
        for i in ROW_READ_INPUTS.get(n.op_type, ())
        if i < len(n.input) and n.input[i]
    }
    gathered |= rows
    read_whole = {
        name
        for n in graph.node
        if n.op_type not in EMBEDDING_OPS
        for i, name in enumerate(n.input)
        if i not in ROW_READ_INPUTS.get(n.op_type, ())
    }
    return sum(
        size
        for name, size in sizes.items()
        if name not in gathered or name in read_whole  # a gathered table is read a row a step
    )


def _initializer_bytes(tensor) -> int:
    """Stored size of an initializer, without loading external data."""
    import numpy as np
    from onnx import TensorProto, helper

    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    if tensor.raw_data:
        return len(tensor.raw_data)
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    if tensor.data_type in (TensorProto.INT4, TensorProto.UINT4):  # two per byte
        return (count + 1) // 2
    return count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
