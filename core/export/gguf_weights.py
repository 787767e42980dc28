"""The configuration's weights as GGUF export sees them: every tensor by its
transformers name, as the float32 values the configuration computes with,
plus its own int8/int4 grid where it has one (so a GGUF type on the same
grid can take the values as they are instead of rounding them again).

Low-rank factor pairs are multiplied back into one matrix: llama.cpp has no
factorised linear layer, so the GGUF holds the full matrix (no size saving).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.models.int4_packing import unpack_int4
from core.models.quantized_embedding import Int4Embedding, Int8Embedding
from core.models.quantized_linear import (
    Int4WeightOnlyLinear,
    Int8DynamicLinear,
    Int8WeightOnlyLinear,
)


@dataclass(frozen=True)
class Int8Grid:
    """w = q * scale, one scale per row."""

    q: torch.Tensor  # int8 [rows, cols]
    scale: torch.Tensor  # float32 [rows]


@dataclass(frozen=True)
class Int4Grid:
    """w = q * scale + minimum, per row and group of ``group`` columns."""

    q: torch.Tensor  # uint8 in [0, 15], [rows, cols]
    scale: torch.Tensor  # float32 [rows, groups]
    minimum: torch.Tensor  # float32 [rows, groups]
    group: int


@dataclass(frozen=True)
class SourceWeight:
    dense: torch.Tensor  # float32: the values the configuration computes with
    stored: str  # how the configuration keeps it, in words
    grid: Int8Grid | Int4Grid | None = None

    def reorder_rows(self, order: torch.Tensor) -> SourceWeight:
        grid = self.grid
        if isinstance(grid, Int8Grid):
            grid = Int8Grid(grid.q[order], grid.scale[order])
        elif isinstance(grid, Int4Grid):
            grid = Int4Grid(grid.q[order], grid.scale[order], grid.minimum[order], grid.group)
        return replace(self, dense=self.dense[order], grid=grid)


def _float(tensor: torch.Tensor) -> SourceWeight:
    return SourceWeight(tensor.detach().float().cpu(), str(tensor.dtype).removeprefix("torch."))


def _int8(q: torch.Tensor, scale: torch.Tensor, stored: str) -> SourceWeight:
    q, scale = q.detach().cpu(), scale.detach().float().cpu()
    return SourceWeight(q.float() * scale[:, None], stored, Int8Grid(q, scale))


def _int4(module: Int4WeightOnlyLinear | Int4Embedding) -> SourceWeight:
    tensors = module.stored_tensors()  # the CPU layout, from any device
    scales_and_zeros = tensors["scales_and_zeros"].float()  # [groups, rows, 2]
    rows = scales_and_zeros.shape[1]
    q = unpack_int4(tensors["weight_int4pack"], rows, module.padded_in_features)
    out, cols, group = module.out_features, module.in_features, module.group_size
    scale = scales_and_zeros[..., 0].t()[:out]
    # The kernel computes (q - 8) * scale + zero, so the group minimum is zero - 8 * scale.
    minimum = scales_and_zeros[..., 1].t()[:out] - 8 * scale
    q = q[:out].to(torch.uint8)
    columns = torch.arange(q.shape[1]) // group
    dense = q.float() * scale[:, columns] + minimum[:, columns]
    grid = Int4Grid(q[:, :cols], scale, minimum, group)
    return SourceWeight(dense[:, :cols].contiguous(), f"int4 g{group}", grid)


def _low_rank(pair: nn.Sequential) -> tuple[SourceWeight, torch.Tensor | None]:
    """(second @ first, the combined bias) of a factor pair."""
    first, second = (configuration_linear(m) for m in pair)
    a, b = first[0].dense.double(), second[0].dense.double()
    bias = second[1].double() if second[1] is not None else None
    if first[1] is not None:  # second(first(x)) = B (A x + a) + b
        extra = b @ first[1].double()
        bias = extra if bias is None else bias + extra
    product = SourceWeight((b @ a).float(), f"low-rank product of rank {a.shape[0]}")
    return product, None if bias is None else bias.float()


def configuration_linear(module: nn.Module) -> tuple[SourceWeight, torch.Tensor | None]:
    """(weight, bias as float32) of any linear layer a pass can leave."""
    bias = getattr(module, "bias", None)
    bias = None if bias is None else bias.detach().float().cpu()
    if isinstance(module, Int8WeightOnlyLinear):
        return _int8(module.weight_int8, module.scales, "int8 per-row"), bias
    if isinstance(module, Int8DynamicLinear):
        stored = "int8 per-row (W8A8; activations are quantised by llama.cpp's own kernels)"
        return _int8(module.weight_int8_t.t(), module.scales, stored), bias
    if isinstance(module, Int4WeightOnlyLinear):
        return _int4(module), bias
    if type(module) is nn.Linear:
        return _float(module.weight), bias
    if type(module) is nn.Sequential and len(module) == 2:
        return _low_rank(module)
    raise UnsupportedModelError(f"GGUF export cannot write a {type(module).__name__} layer")


LINEAR_TYPES = (nn.Linear, Int8WeightOnlyLinear, Int8DynamicLinear, Int4WeightOnlyLinear)


def configuration_weights(model: nn.Module) -> dict[str, SourceWeight]:
    """Every tensor of the model by its transformers name. A head that holds
    the same values as the token embedding is left out: llama.cpp then reads
    the embedding for both, as it does for tied weights."""
    weights: dict[str, SourceWeight] = {}
    done: list[str] = []  # modules whose tensors were written as a whole
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in done):
            continue
        low_rank = type(module) is nn.Sequential and all(
            isinstance(m, LINEAR_TYPES) for m in module
        )
        if isinstance(module, LINEAR_TYPES) or low_rank:
            weight, bias = configuration_linear(module)
            weights[f"{name}.weight"] = weight
            if bias is not None:
                weights[f"{name}.bias"] = SourceWeight(bias, "float32")
            done.append(name)
        elif isinstance(module, Int8Embedding):
            weights[f"{name}.weight"] = _int8(module.weight_int8, module.scales, "int8 per-row")
            done.append(name)
        elif isinstance(module, Int4Embedding):  # stored as an int4 head is
            weights[f"{name}.weight"] = _int4(module)
            done.append(name)
        else:
            for key, tensor in module.named_parameters(recurse=False):
                weights[f"{name}.{key}"] = _float(tensor)
            for key, tensor in module.named_buffers(recurse=False):
                if tensor is not None and key not in module._non_persistent_buffers_set:
                    weights[f"{name}.{key}"] = _float(tensor)
    head, embedding = weights.get("lm_head.weight"), weights.get("model.embed_tokens.weight")
    if head is not None and embedding is not None and torch.equal(head.dense, embedding.dense):
        del weights["lm_head.weight"]
    return weights
