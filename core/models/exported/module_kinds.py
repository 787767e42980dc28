"""The module types our exported folders can rebuild, by name (an allow-list,
never pickle): how each one's tensors are written and how it is built again
from those tensors and a few recorded integers.

Why by hand: transformers has no loader for our int8/int4 packed-matmul and
W8A8 modules or for a Linear split in two low-rank factors; safetensors
stores plain tensors only. Each kind here
is a few lines: the tensors it owns, the integers its constructor needs.

A folder may have been edited by anyone, so each kind also says which tensor
names and attributes it accepts and checks every tensor's dtype and shape
before the module is built: torch's packed kernels trust their inputs (the
int4 kernel reads past a short ``scales_and_zeros`` without a word).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.models.quantized_embedding import Int4Embedding, Int8Embedding
from core.models.quantized_linear import (
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
    # What a manifest may hold for this kind, and the first problem with it (or None).
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    attribute_names: tuple[str, ...] = ()
    check: Callable[[dict[str, torch.Tensor], dict], str | None] = lambda tensors, attrs: None
    cpu_only: bool = False
    # What it stands in for in the architecture: a "linear" layer, an "embedding"
    # or a "layernorm".
    replaces: str = "linear"
    # True when the tensors written are not the module's state_dict (e.g. a
    # packed object unpacked), so its children must not be walked on their own.
    custom_storage: bool = False


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    out = dict(module.named_parameters(recurse=False))
    for name, buffer in module.named_buffers(recurse=False):
        if buffer is not None and name not in module._non_persistent_buffers_set:
            out[name] = buffer
    return out


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INT4_GROUP_SIZES = (32, 64, 128, 256)  # what torch's int4 CPU kernel accepts
MAX_FEATURES = 1 << 24  # no real linear is wider; a bigger number is a damaged manifest


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _first_problem(*problems: str | None) -> str | None:
    return next((p for p in problems if p), None)


def _expect(tensor: torch.Tensor, name: str, dtype: torch.dtype, shape: tuple) -> str | None:
    if tensor.dtype != dtype:
        return f"{name} is {dtype_name(tensor.dtype)}, not {dtype_name(dtype)}"
    if tuple(tensor.shape) != shape:
        return f"{name} has shape {list(tensor.shape)}, not {list(shape)}"
    return None


def _matrix(tensor: torch.Tensor, name: str, dtype: torch.dtype) -> str | None:
    if tensor.dtype != dtype or tensor.dim() != 2 or 0 in tensor.shape:
        found = f"{dtype_name(tensor.dtype)} {list(tensor.shape)}"
        return f"{name} must be a 2-D {dtype_name(dtype)} matrix, not {found}"
    return None


def _bias(tensors: dict, dtype: torch.dtype, out_features: int) -> str | None:
    bias = tensors.get("bias")
    return None if bias is None else _expect(bias, "bias", dtype, (out_features,))


def _positive_ints(attrs: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = attrs.get(name)
        if type(value) is not int or not 0 < value <= MAX_FEATURES:
            return f"attribute {name} must be a positive integer, not {value!r}"
    return None


def _check_int8(tensors, attrs):
    weight = tensors["weight_int8"]  # [out, in]
    if problem := _matrix(weight, "weight_int8", torch.int8):
        return problem
    out_features = weight.shape[0]
    return _first_problem(
        _expect(tensors["scales"], "scales", torch.bfloat16, (out_features,)),
        _bias(tensors, torch.bfloat16, out_features),
    )


EMBEDDING_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _check_int8_embedding(tensors, attrs):
    weight = tensors["weight_int8"]  # [vocab, dim]
    if problem := _matrix(weight, "weight_int8", torch.int8):
        return problem
    rows = weight.shape[0]
    padding = attrs.get("padding_idx")
    if type(padding) is not int or not -1 <= padding < rows:
        return f"padding_idx must be -1 (none) or a row index, not {padding!r}"
    if attrs.get("output_dtype") not in EMBEDDING_DTYPES:
        return f"output_dtype must be one of {', '.join(EMBEDDING_DTYPES)}"
    return _expect(tensors["scales"], "scales", torch.bfloat16, (rows,))


def _build_int8_embedding(tensors, attrs, _children):
    padding = attrs["padding_idx"]
    return Int8Embedding(
        tensors["weight_int8"],
        tensors["scales"],
        None if padding == -1 else padding,
        EMBEDDING_DTYPES[attrs["output_dtype"]],
    )


def _check_int8_dynamic(tensors, attrs):
    weight = tensors["weight_int8_t"]  # [in, out]: _int_mm's layout
    if problem := _matrix(weight, "weight_int8_t", torch.int8):
        return problem
    out_features = weight.shape[1]
    return _first_problem(
        _expect(tensors["scales"], "scales", torch.float32, (out_features,)),
        _bias(tensors, torch.float32, out_features),
    )


def _check_int4(tensors, attrs):
    names = ("in_features", "padded_in_features", "out_features", "group_size")
    if problem := _positive_ints(attrs, names):
        return problem
    group, padded = attrs["group_size"], attrs["padded_in_features"]
    if group not in INT4_GROUP_SIZES:
        return f"group_size {group} is not one of {INT4_GROUP_SIZES}"
    if padded % group or not padded - group < attrs["in_features"] <= padded:
        return (
            f"padded_in_features {padded} is not in_features {attrs['in_features']} "
            f"padded to a multiple of {group}"
        )
    packed = tensors["weight_int4pack"]  # [rows, padded / 2]: two 4-bit values a byte
    if problem := _matrix(packed, "weight_int4pack", torch.uint8):
        return problem
    rows = packed.shape[0]
    if rows % 16 or not rows - 16 < attrs["out_features"] <= rows:
        return (
            f"weight_int4pack has {rows} rows for out_features {attrs['out_features']} "
            "(the kernel wants them padded to the next multiple of 16)"
        )
    return _first_problem(
        _expect(packed, "weight_int4pack", torch.uint8, (rows, padded // 2)),
        _expect(
            tensors["scales_and_zeros"],
            "scales_and_zeros",
            torch.bfloat16,
            (padded // group, rows, 2),
        ),
        _bias(tensors, torch.bfloat16, attrs["out_features"]),
    )


def _check_int4_embedding(tensors, attrs):
    rows = attrs.get("out_features")
    padding = attrs.get("padding_idx")
    if type(rows) is int and (type(padding) is not int or not -1 <= padding < rows):
        return f"padding_idx must be -1 (none) or a row index, not {padding!r}"
    if attrs.get("output_dtype") not in EMBEDDING_DTYPES:
        return f"output_dtype must be one of {', '.join(EMBEDDING_DTYPES)}"
    return _check_int4(tensors, attrs)  # the same packing as an int4 head


def _build_int4_embedding(tensors, attrs, _children):
    padding = attrs["padding_idx"]
    return Int4Embedding(
        tensors["weight_int4pack"],
        tensors["scales_and_zeros"],
        attrs["out_features"],
        attrs["in_features"],
        attrs["padded_in_features"],
        attrs["group_size"],
        None if padding == -1 else padding,
        EMBEDDING_DTYPES[attrs["output_dtype"]],
    )


def _check_linear(tensors, attrs):
    weight = tensors["weight"]
    if weight.dtype not in FLOAT_DTYPES:
        return f"weight must be float32, float16 or bfloat16, not {dtype_name(weight.dtype)}"
    if problem := _matrix(weight, "weight", weight.dtype):
        return problem
    return _bias(tensors, weight.dtype, weight.shape[0])


def _check_pair(tensors, attrs):
    if type(attrs.get("children")) is not int or attrs["children"] != 2:
        return f"a low-rank pair has 2 children, not {attrs.get('children')!r}"
    return None


def _build_linear(tensors, attrs, _children):
    weight = tensors["weight"]
    module = nn.Linear(
        weight.shape[1], weight.shape[0], bias="bias" in tensors, device="meta", dtype=weight.dtype
    )
    module.weight = nn.Parameter(weight, requires_grad=False)
    if "bias" in tensors:
        module.bias = nn.Parameter(tensors["bias"], requires_grad=False)
    return module


def _check_layernorm(tensors, attrs):
    if problem := _positive_ints(attrs, ("width",)):
        return problem
    eps = attrs.get("eps")
    if type(eps) is not float or not 0 < eps < 1:
        return f"attribute eps must be a small positive number, not {eps!r}"
    if "bias" in tensors and "weight" not in tensors:
        return "a bias without a weight"
    for name, tensor in tensors.items():
        if tensor.dtype not in FLOAT_DTYPES or tuple(tensor.shape) != (attrs["width"],):
            found = f"{dtype_name(tensor.dtype)} {list(tensor.shape)}"
            return f"{name} must be a float vector of {attrs['width']}, not {found}"
    return None


def _build_layernorm(tensors, attrs, _children):
    weight = tensors.get("weight")
    module = nn.LayerNorm(
        attrs["width"],
        eps=attrs["eps"],
        elementwise_affine=weight is not None,
        bias="bias" in tensors,
        device="meta",
    )
    for name, tensor in tensors.items():
        setattr(module, name, nn.Parameter(tensor, requires_grad=False))
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
            required=("weight_int8", "scales"),
            optional=("bias",),
            check=_check_int8,
        ),
        ModuleKind(
            "Int8Embedding",
            lambda m: isinstance(m, Int8Embedding),
            _own_tensors,
            lambda m: {
                "padding_idx": -1 if m.padding_idx is None else m.padding_idx,
                "output_dtype": str(m.output_dtype).removeprefix("torch."),
            },
            _build_int8_embedding,
            required=("weight_int8", "scales"),
            attribute_names=("padding_idx", "output_dtype"),
            check=_check_int8_embedding,
            replaces="embedding",
        ),
        ModuleKind(
            "Int8DynamicLinear",
            lambda m: isinstance(m, Int8DynamicLinear),
            _own_tensors,
            lambda m: {},
            lambda tensors, attrs, children: Int8DynamicLinear(
                tensors["weight_int8_t"], tensors["scales"], tensors.get("bias")
            ),
            required=("weight_int8_t", "scales"),
            optional=("bias",),
            check=_check_int8_dynamic,
        ),
        ModuleKind(
            "Int4WeightOnlyLinear",
            lambda m: isinstance(m, Int4WeightOnlyLinear),
            lambda m: m.stored_tensors(),  # the CPU layout, from any device
            lambda m: {
                "in_features": m.in_features,
                "padded_in_features": m.padded_in_features,
                "out_features": m.out_features,
                "group_size": m.group_size,
            },
            _build_int4,
            required=("weight_int4pack", "scales_and_zeros"),
            optional=("bias",),
            attribute_names=("in_features", "padded_in_features", "out_features", "group_size"),
            check=_check_int4,
            cpu_only=True,  # the packing is the CPU kernel's layout
        ),
        ModuleKind(
            "Int4Embedding",
            lambda m: isinstance(m, Int4Embedding),
            lambda m: m.stored_tensors(),  # always the CPU layout
            lambda m: {
                "in_features": m.in_features,
                "padded_in_features": m.padded_in_features,
                "out_features": m.out_features,
                "group_size": m.group_size,
                "padding_idx": -1 if m.padding_idx is None else m.padding_idx,
                "output_dtype": str(m.output_dtype).removeprefix("torch."),
            },
            _build_int4_embedding,
            required=("weight_int4pack", "scales_and_zeros"),
            attribute_names=(
                "in_features",
                "padded_in_features",
                "out_features",
                "group_size",
                "padding_idx",
                "output_dtype",
            ),
            check=_check_int4_embedding,
            cpu_only=True,  # the packing is the CPU kernel's layout
            replaces="embedding",
        ),
        ModuleKind(
            "Linear",
            lambda m: type(m) is nn.Linear,
            _own_tensors,
            lambda m: {},
            _build_linear,
            required=("weight",),
            optional=("bias",),
            check=_check_linear,
        ),
        ModuleKind(
            # A per-head norm narrower than the config says: Persimmon's q/k
            # norms after heads were removed (its head width is hidden / heads).
            "LayerNorm",
            lambda m: type(m) is nn.LayerNorm and len(m.normalized_shape) == 1,
            _own_tensors,
            lambda m: {"width": m.normalized_shape[0], "eps": float(m.eps)},
            _build_layernorm,
            optional=("weight", "bias"),
            attribute_names=("width", "eps"),
            check=_check_layernorm,
            replaces="layernorm",
        ),
        ModuleKind(
            "Sequential",  # a low-rank factor pair; its children are entries of their own
            lambda m: type(m) is nn.Sequential,
            lambda m: {},
            lambda m: {"children": len(m)},
            lambda tensors, attrs, children: nn.Sequential(*children),
            attribute_names=("children",),
            check=_check_pair,
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
