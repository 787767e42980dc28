"""The module types our exported folders can rebuild, by name (an allow-list,
never pickle): how each one's tensors are written and how it is built again
from those tensors and a few recorded integers.

Why by hand: transformers has no loader for torch's int8/int4 packed-matmul
modules, for torch.ao's dynamic-quantized Linear (its weights live in an
fbgemm packed object that safetensors cannot hold) or for a Linear split in
two low-rank factors; safetensors stores plain tensors only. Each kind here
is a few lines: the tensors it owns, the integers its constructor needs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.passes.quantized_linear import (
    Int4WeightOnlyLinear,
    Int8DynamicLinear,
    Int8WeightOnlyLinear,
)


@dataclass(frozen=True)
class ModuleKind:
    name: str
    matches: Callable[[nn.Module], bool]
    tensors: Callable[[nn.Module], dict[str, torch.Tensor]]  # own tensors, by short name
    attributes: Callable[[nn.Module], dict]  # what the constructor needs besides tensors
    build: Callable[[dict[str, torch.Tensor], dict, list[nn.Module]], nn.Module]
    cpu_only: bool = False


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    out = dict(module.named_parameters(recurse=False))
    for name, buffer in module.named_buffers(recurse=False):
        if buffer is not None and name not in module._non_persistent_buffers_set:
            out[name] = buffer
    return out


def _is_dynamic_linear(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return isinstance(module, DynamicLinear)


def _dynamic_tensors(module) -> dict[str, torch.Tensor]:
    """fbgemm's packed weight unpacked to int8 values and float32 scales (the
    zero points of per-channel symmetric quantization are all zero)."""
    weight = module.weight()
    if weight.qscheme() not in (torch.per_channel_symmetric, torch.per_channel_affine):
        raise ValueError("only per-channel dynamic int8 linears can be exported")
    if bool((weight.q_per_channel_zero_points() != 0).any()):
        raise ValueError("dynamic int8 linear with non-zero zero points cannot be exported")
    out = {
        "weight_int8": weight.int_repr(),
        "scales": weight.q_per_channel_scales().to(torch.float32),
    }
    if module.bias() is not None:
        out["bias"] = module.bias()
    return out


def _build_dynamic(tensors, attrs, _children):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    scales = tensors["scales"].to(torch.float64)  # the quantized tensor keeps doubles
    with warnings.catch_warnings():  # torch.ao's quantized tensors are marked deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch._make_per_channel_quantized_tensor(
            tensors["weight_int8"], scales, torch.zeros_like(scales, dtype=torch.int64), 0
        )
        module = DynamicLinear(attrs["in_features"], attrs["out_features"], dtype=torch.qint8)
        module.set_weight_bias(qweight, tensors.get("bias"))
    return module


def _build_linear(tensors, attrs, _children):
    weight = tensors["weight"]
    module = nn.Linear(
        weight.shape[1], weight.shape[0], bias="bias" in tensors, device="meta", dtype=weight.dtype
    )
    module.weight = nn.Parameter(weight, requires_grad=False)
    if "bias" in tensors:
        module.bias = nn.Parameter(tensors["bias"], requires_grad=False)
    return module


def _build_int8(tensors, attrs, _children):
    return Int8WeightOnlyLinear(tensors["weight_int8"], tensors["scales"], tensors.get("bias"))


def _build_int4(tensors, attrs, _children):
    module = Int4WeightOnlyLinear(
        tensors["weight_int4pack"],
        tensors["scales_and_zeros"],
        tensors.get("bias"),
        attrs["in_features"],
        attrs["padded_in_features"],
        attrs["group_size"],
    )
    module.out_features = attrs["out_features"]
    return module


KINDS: dict[str, ModuleKind] = {
    kind.name: kind
    for kind in (
        ModuleKind(
            "Int8WeightOnlyLinear",
            lambda m: isinstance(m, Int8WeightOnlyLinear),
            _own_tensors,
            lambda m: {},
            _build_int8,
        ),
        ModuleKind(
            "Int8DynamicLinear",
            lambda m: isinstance(m, Int8DynamicLinear),
            _own_tensors,
            lambda m: {},
            lambda tensors, attrs, children: Int8DynamicLinear(
                tensors["weight_int8_t"], tensors["scales"], tensors.get("bias")
            ),
        ),
        ModuleKind(
            "Int4WeightOnlyLinear",
            lambda m: isinstance(m, Int4WeightOnlyLinear),
            _own_tensors,
            lambda m: {
                "in_features": m.in_features,
                "padded_in_features": m.padded_in_features,
                "out_features": m.out_features,
                "group_size": m.group_size,
            },
            _build_int4,
            cpu_only=True,  # the packing is the CPU kernel's layout
        ),
        ModuleKind(
            "DynamicInt8Linear",
            _is_dynamic_linear,
            _dynamic_tensors,
            lambda m: {"in_features": m.in_features, "out_features": m.out_features},
            _build_dynamic,
            cpu_only=True,  # fbgemm
        ),
        ModuleKind(
            "Linear",
            lambda m: type(m) is nn.Linear,
            _own_tensors,
            lambda m: {},
            _build_linear,
        ),
        ModuleKind(
            "Sequential",  # a low-rank factor pair; its children are entries of their own
            lambda m: type(m) is nn.Sequential,
            lambda m: {},
            lambda m: {"children": len(m)},
            lambda tensors, attrs, children: nn.Sequential(*children),
        ),
    )
}


def kind_of(module: nn.Module) -> ModuleKind | None:
    return next((k for k in KINDS.values() if k.matches(module)), None)


def stored_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a module owns as they are written (custom kinds unpack)."""
    kind = kind_of(module)
    return kind.tensors(module) if kind is not None else _own_tensors(module)


def has_custom_storage(module: nn.Module) -> bool:
    """Modules whose tensors are not their state_dict (children not walked)."""
    return _is_dynamic_linear(module)
