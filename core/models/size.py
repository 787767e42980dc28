"""Bytes of a model as it would be exported: every stored tensor once
(parameters, persistent buffers such as int8/int4 weights and scales, and
the packed weights of torch's quantized linear), split by component."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from core.models.linear_layers import component_of

COMPONENTS = ("embeddings", "attention", "mlp", "head", "other")


@dataclass(frozen=True)
class StoredTensor:
    name: str
    component: str
    dtype: str
    nbytes: int
    weights: int  # logical weight count (a packed int4 byte holds two)


@dataclass(frozen=True)
class SizeBreakdown:
    total_bytes: int
    by_component: dict[str, int]
    by_dtype: dict[str, int]
    weights: int

    def to_dict(self) -> dict:
        return asdict(self)


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def stored_tensors(model: nn.Module) -> Iterator[StoredTensor]:
    seen: set[tuple[int, int]] = set()

    def once(t: torch.Tensor) -> bool:
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen:
            return False
        seen.add(key)
        return True

    for module_name, module in model.named_modules():
        component = component_of(module_name)
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(module, "weight") and callable(module.weight):
            # torch.ao dynamic quantized Linear: int8 weight + per-channel scales.
            qweight = module.weight()
            scales = (
                qweight.q_per_channel_scales()
                if qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
                else torch.ones(1)
            )
            yield StoredTensor(module_name, component, "int8", qweight.numel(), qweight.numel())
            yield StoredTensor(module_name, component, "float32", 4 * scales.numel(), 0)
            bias = module.bias()
            if bias is not None:
                yield StoredTensor(module_name, component, "float32", bias.nbytes, bias.numel())
            continue
        persistent = [
            (n, b)
            for n, b in module.named_buffers(recurse=False)
            if n not in module._non_persistent_buffers_set and b is not None
        ]
        for name, tensor in list(module.named_parameters(recurse=False)) + persistent:
            if not once(tensor):
                continue
            weights = tensor.numel()
            if name == "weight_int4pack":  # two 4-bit weights a byte, in any packing
                weights = 2 * tensor.nbytes
            elif name in ("scales", "scales_and_zeros"):
                weights = 0
            yield StoredTensor(
                f"{module_name}.{name}", component, _dtype_name(tensor), tensor.nbytes, weights
            )


def measure_size(model: nn.Module) -> SizeBreakdown:
    by_component: Counter[str] = Counter({c: 0 for c in COMPONENTS})
    by_dtype: Counter[str] = Counter()
    weights = 0
    for t in stored_tensors(model):
        by_component[t.component] += t.nbytes
        by_dtype[t.dtype] += t.nbytes
        weights += t.weights
    return SizeBreakdown(sum(by_dtype.values()), dict(by_component), dict(by_dtype), weights)
