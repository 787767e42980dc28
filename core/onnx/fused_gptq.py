"""GPTQ rounding for the fused graph's int4 blocks (``core.onnx.fused``,
method "gptq").

The builder rounds each matrix to nearest; this replaces the decoder layers'
blocks with GPTQ's (``core.passes.gptq`` in act-order with static groups,
so a block is still a run of consecutive inputs; Hessians of each matrix's
inputs in the float model on the calibration split), in the same MatMulNBits
layout, so the graph runs the same kernel at the same speed. Why by hand:
ONNX Runtime's quantiser has GPTQ only through Intel Neural Compressor (not
a dependency), and onnxruntime-genai's builder reads GPTQ weights only from
an AutoGPTQ checkpoint, whose fp16 scales we would then round once more.

The grid is asymmetric with integer zero points (``integer_zero``), as
MatMulNBits stores them. The head is not GPTQ's: a tied head is also the
embedding table (``GatherBlockQuantized`` reads the same blocks), which
GPTQ's input statistics say nothing about; it takes int8 blocks instead
(``core.onnx.fused_head``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from core.progress import CancelToken, Progress, ProgressSink, ignore_progress

# The builder's matrix (``model.layers.<i>.<attn|mlp>.<part>.MatMul.weight_Q4``)
# -> the model's modules under ``layers.<i>`` whose rows it holds, in this
# order; the first layout the model has is taken. Phi-3 keeps q/k/v in one
# ``qkv_proj`` and gate/up in one ``gate_up_proj``, which the builder splits
# into gate_proj and up_proj: ``[0/2]`` is the first half of the rows.
PARTS = {
    "attn.qkv_proj": (
        ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("self_attn.qkv_proj",),
    ),
    "attn.q_proj": (("self_attn.q_proj",),),
    "attn.k_proj": (("self_attn.k_proj",),),
    "attn.v_proj": (("self_attn.v_proj",),),
    "attn.o_proj": (("self_attn.o_proj",),),
    "mlp.gate_up_proj": (("mlp.gate_proj", "mlp.up_proj"), ("mlp.gate_up_proj",)),
    "mlp.gate_proj": (("mlp.gate_proj",), ("mlp.gate_up_proj[0/2]",)),
    "mlp.up_proj": (("mlp.up_proj",), ("mlp.gate_up_proj[1/2]",)),
    "mlp.down_proj": (("mlp.down_proj",),),
}  # fmt: skip
_PART_OF_ROWS = re.compile(r"^(.*)\[(\d+)/(\d+)\]$")
_WEIGHT = re.compile(r"model\.layers\.(\d+)\.(\w+\.\w+)\.MatMul\.weight_Q4$")
DAMP = 0.01  # GPTQ's usual dampening, as the torch pass uses
# The fp32 Hessians held at once: a 7B model's would take ~20 GB together,
# so they are collected for as many nodes as fit, one calibration pass each
# (the default model's 120, one per layer input, fit in one pass: ~0.4 GB).
HESSIAN_BUDGET_BYTES = 2 << 30
PROGRESS_STEPS = 30  # progress lines at most (the CLI prints each)


@dataclass(frozen=True)
class Rows:
    """Rows of a model linear that one graph matrix holds (all, or a part)."""

    name: str
    linear: torch.nn.Linear
    rows: slice

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight[self.rows]


def layer_matrices(graph, model) -> dict[str, list[Rows]]:
    """Each decoder layer's MatMulNBits node name -> the model's rows it holds."""
    modules = dict(model.named_modules())
    prefix = next((name[: -len("layers.0")] for name in modules if name.endswith("layers.0")), None)
    found = {}
    for node in graph.node:
        if node.op_type != "MatMulNBits":
            continue
        match = _WEIGHT.match(node.input[1])
        if match is None:
            continue  # the head: the builder's rounding stays
        index, part = match.groups()
        for names in PARTS.get(part, ()) if prefix is not None else ():
            rows = [_rows(modules, f"{prefix}layers.{index}.", name) for name in names]
            if all(rows):
                found[node.name] = rows
                break
        else:
            raise ValueError(f"GPTQ found no matrices of the model for the graph's {node.input[1]}")
    return found


def _rows(modules: dict, layer: str, name: str) -> Rows | None:
    """``name`` (``path`` or ``path[i/n]``, the i-th of n equal parts of its
    rows) under ``layer``, or None when the model has no such linear."""
    part = _PART_OF_ROWS.match(name)
    path, index, parts = (part[1], int(part[2]), int(part[3])) if part else (name, 0, 1)
    linear = modules.get(layer + path)
    if not isinstance(linear, torch.nn.Linear) or linear.out_features % parts:
        return None
    size = linear.out_features // parts
    return Rows(name, linear, slice(index * size, (index + 1) * size))


def pack_blocks(q: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor, block: int):
    """MatMulNBits' int4 tensors from levels ``q`` [N, K] in [0, 15] and each
    block's grid (w = q * scale + minimum, minimum = -zero * scale): B uint8
    [N, blocks, block/2] (low nibble first), scales [N, blocks], zero points
    uint8 [N, ceil(blocks/2)] (low nibble first)."""
    n, k = q.shape
    blocks = k // block
    levels = q.to(torch.uint8).reshape(n, blocks, block // 2, 2)
    packed = levels[..., 0] | (levels[..., 1] << 4)
    zero = torch.round(-minimum / scale).clamp(0, 15).to(torch.uint8)
    if blocks % 2:
        zero = torch.nn.functional.pad(zero, (0, 1))
    zero = zero.reshape(n, -1, 2)
    zero_points = zero[..., 0] | (zero[..., 1] << 4)
    return packed.numpy(), scale.float().numpy(), zero_points.numpy()


def hessian_chunk(matrices: dict, inputs: dict, start: int, budget: int) -> list:
    """(graph input, linear) pairs for the inputs of the nodes from the
    ``start``-th on, as many as fit in ``budget`` bytes of Hessians (at
    least one). One per input: nodes reading the same tensor (q, k, v; gate,
    up, fused or not) share one."""
    chunk, used, seen = [], 0, set()
    for name, parts in list(matrices.items())[start:]:
        if inputs[name] in seen:
            continue
        linear = parts[0].linear
        size = linear.in_features**2 * 4
        if chunk and used + size > budget:
            break
        chunk.append((inputs[name], linear))
        seen.add(inputs[name])
        used += size
    return chunk


def round_by_gptq(
    model,
    path: Path,
    calibration: list[torch.Tensor],
    block: int,
    cancel: CancelToken | None = None,
    progress: ProgressSink = ignore_progress,
) -> None:
    """Rewrite the fused graph at ``path`` (int4, blocks of ``block``) with
    GPTQ's blocks for every decoder-layer matrix."""
    import onnx
    from onnx import numpy_helper

    from core.passes.calibration import collect_input_hessians
    from core.passes.gptq import gptq_quantize

    cancel = cancel or CancelToken()
    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    matrices = layer_matrices(graph, model)
    initializers = {init.name: init for init in graph.initializer}
    nodes = {node.name: node for node in graph.node}
    inputs = {name: nodes[name].input[0] for name in matrices}
    every = max(1, len(matrices) // PROGRESS_STEPS)
    hessians: dict[str, torch.Tensor] = {}  # by the graph tensor the nodes read
    for index, (name, parts) in enumerate(matrices.items()):
        cancel.raise_if_cancelled()
        if inputs[name] not in hessians:  # the next inputs' statistics, one calibration pass
            chunk = hessian_chunk(matrices, inputs, index, HESSIAN_BUDGET_BYTES)
            progress(Progress("GPTQ: collecting calibration statistics", 0.2))
            hessians = collect_input_hessians(model, chunk, calibration, cancel)
        hessian = hessians[inputs[name]]
        # GPTQ rounds each row on its own (one Hessian for all), so a part of
        # a linear's rows rounds as it would within the whole.
        rounded = [
            gptq_quantize(part.weight, hessian, block, DAMP, act_order=True, integer_zero=True)
            for part in parts
        ]
        q, scale, minimum = (torch.cat(x) for x in zip(*rounded, strict=True))
        packed, scales, zero_points = pack_blocks(q, scale, minimum, block)
        node = nodes[name]
        for slot, array in ((1, packed), (2, scales)):  # the builder's shapes, checked
            init = initializers[node.input[slot]]
            if tuple(init.dims) != array.shape:
                raise ValueError(f"GPTQ blocks of {init.name} do not fit: {array.shape}")
            init.CopyFrom(numpy_helper.from_array(array, init.name))
        zero_name = f"{node.input[1].removesuffix('_Q4')}_zero_points_gptq"
        graph.initializer.append(numpy_helper.from_array(zero_points, zero_name))
        while len(node.input) < 4:
            node.input.append("")
        node.input[3] = zero_name
        if (index + 1) % every == 0 or index + 1 == len(matrices):
            done = f"{index + 1} of {len(matrices)}"
            fraction = 0.2 + 0.7 * (index + 1) / len(matrices)
            progress(Progress(f"GPTQ: int4 blocks of matrix {done}", fraction))
    data = path.with_name(f"{path.name}.data")
    data.unlink(missing_ok=True)
    onnx.save_model(graph_model, str(path), save_as_external_data=True, location=data.name)
