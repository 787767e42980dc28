"""An instant estimate of the bytes a recipe will produce, computed from
shapes alone (no weights touched, no calibration), so the window can show
it while sliders move. Tests check it equals the measured size after
applying, pass by pass."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

from torch import nn

from core.models.linear_layers import component_of
from core.models.size import COMPONENTS, SizeBreakdown, stored_tensors

_LAYER = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class Entry:
    """A block linear (with shape) or any other stored tensor (bytes only)."""

    name: str
    component: str
    layer: int | None
    nbytes: int
    dtype: str
    out_features: int = 0
    in_features: int = 0
    has_bias: bool = False
    float_bytes: int = 4  # bytes per float element (weights and bias)
    quantized: bool = False

    @property
    def is_linear(self) -> bool:
        return self.out_features > 0


def _linear_bytes(e: Entry) -> int:
    return (e.out_features * e.in_features + e.out_features * e.has_bias) * e.float_bytes


def inventory(model: nn.Module) -> list[Entry]:
    from transformers.pytorch_utils import Conv1D

    entries, covered = [], set()
    for name, module in model.named_modules():
        if component_of(name) not in ("attention", "mlp"):
            continue
        if isinstance(module, nn.Linear | Conv1D):
            weight = module.weight
            out_f, in_f = weight.shape if isinstance(module, nn.Linear) else weight.shape[::-1]
            match = _LAYER.search(f".{name}.")
            e = Entry(
                name,
                component_of(name),
                int(match.group(1)) if match else None,
                0,
                str(weight.dtype).removeprefix("torch."),
                out_f,
                in_f,
                module.bias is not None,
                weight.element_size(),
            )
            entries.append(replace(e, nbytes=_linear_bytes(e)))
            covered.update({f"{name}.weight", f"{name}.bias"})
    for t in stored_tensors(model):
        if t.name not in covered:
            match = _LAYER.search(f".{t.name}.")
            layer = int(match.group(1)) if match else None
            entries.append(Entry(t.name, t.component, layer, t.nbytes, t.dtype))
    return entries


def summarise(entries: list[Entry]) -> SizeBreakdown:
    by_component: Counter[str] = Counter({c: 0 for c in COMPONENTS})
    for e in entries:
        by_component[e.component] += e.nbytes
    total = sum(by_component.values())
    return SizeBreakdown(total, dict(by_component), {}, 0)


def estimate_size(model: nn.Module, recipe, entries: list[Entry] | None = None) -> SizeBreakdown:
    """Bytes (total and by component) that ``recipe`` would give ``model``;
    ``entries``: its ``inventory``, when the caller keeps it (a walk of every
    module, ~30 ms on a 30-layer model)."""
    entries = inventory(model) if entries is None else entries
    for config in recipe.passes:
        entries = config.estimate(entries, model.config)
    return summarise(entries)


def resized(e: Entry, out_features: int | None = None, in_features: int | None = None) -> Entry:
    new = replace(
        e,
        out_features=e.out_features if out_features is None else out_features,
        in_features=e.in_features if in_features is None else in_features,
    )
    return replace(new, nbytes=_linear_bytes(new))


def quantized(e: Entry, nbytes: int) -> Entry:
    return replace(e, nbytes=nbytes, quantized=True)


def short_name(e: Entry) -> str:
    return e.name.rsplit(".", 1)[-1]


def per_channel_int8(entries: list[Entry], scale_bytes: int, chosen=None) -> list[Entry]:
    """Block linears (those ``chosen`` picks; default all) as int8 weights with
    one scale per output channel; the scale and the bias are stored in
    ``scale_bytes``-wide floats."""
    chosen = chosen or (lambda e: e.is_linear)
    return [
        quantized(e, e.out_features * (e.in_features + scale_bytes * (1 + e.has_bias)))
        if chosen(e)
        else e
        for e in entries
    ]
