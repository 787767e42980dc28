"""The module types our exported folders can rebuild, by name (an allow-list,
never pickle): how each one's tensors are written and how it is built again
from those tensors and a few recorded integers.

Why by hand: transformers has no loader for our int8/int4 packed-matmul and
W8A8 modules or for a Linear split in two low-rank factors; safetensors
stores plain tensors only. Each kind here
is a few lines: the tensors it owns, the integers its constructor needs.
"""

from __future__ import annotations

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
    # True when the tensors written are not the module's state_dict (e.g. a
    # packed object unpacked), so its children must not be walked on their own.
    custom_storage: bool = False


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    out = dict(module.named_parameters(recurse=False))
    for name, buffer in module.named_buffers(recurse=False):
        if buffer is not None and name not in module._non_persistent_buffers_set:
            out[name] = buffer
    return out


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
    kind = kind_of(module)
    return kind is not None and kind.custom_storage
