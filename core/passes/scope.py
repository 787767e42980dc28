"""Which block linears a pass touches: transformer layers (indices and
ranges, "0-3,28") and parts of a block (q, k, v, o, qkv, gate, up, down,
gate_up). Empty means every layer, every part. This is what lets one recipe
hold int8 on the layers the data says are sensitive and int4 elsewhere:
each quantization names its own, disjoint, set.

Parts are read from module paths, for the families the passes support:
Llama-style q/k/v/o_proj and gate/up/down_proj (Mistral, Qwen, Gemma), Phi-3's
fused qkv_proj and gate_up_proj, GPT-2's c_attn (qkv), attn.c_proj (o),
c_fc (up) and mlp.c_proj (down), BERT's query/key/value, attention output
(o), intermediate (up) and output (down).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.models.linear_layers import component_of

PARTS = ("q", "k", "v", "o", "qkv", "gate", "up", "down", "gate_up")
_BY_LEAF = {
    "q_proj": "q", "query": "q", "k_proj": "k", "key": "k", "v_proj": "v", "value": "v",
    "o_proj": "o", "out_proj": "o", "qkv_proj": "qkv", "c_attn": "qkv",
    "query_key_value": "qkv", "gate_proj": "gate", "up_proj": "up", "c_fc": "up",
    "fc1": "up", "down_proj": "down", "fc2": "down", "gate_up_proj": "gate_up",
}  # fmt: skip
_LAYER = re.compile(r"\.(\d+)\.")
_RANGE = re.compile(r"^([0-9]{1,4})(?:-([0-9]{1,4}))?$")  # ASCII: int() also reads "١"


def layer_of(name: str) -> int | None:
    """The transformer layer a module path lies in (its first index)."""
    match = _LAYER.search(f".{name}.")
    return int(match.group(1)) if match else None


def part_of(name: str) -> str | None:
    """The block part a linear's path names (None: not one we know)."""
    parts = name.split(".")
    leaf = parts[-1]
    if leaf in _BY_LEAF:
        return _BY_LEAF[leaf]
    component = component_of(name)
    if leaf in ("c_proj", "dense"):  # GPT-2 / BERT: the same leaf in both blocks
        if component == "attention":
            return "o"
        if "intermediate" in parts:
            return "up"
        if component == "mlp":
            return "down"
    return None


def parse_layers(text: str) -> frozenset[int] | None:
    """ "0-3, 28" -> {0, 1, 2, 3, 28}; "" -> None (every layer)."""
    if not text.strip():
        return None
    chosen: set[int] = set()
    for piece in text.split(","):
        match = _RANGE.match(piece.strip())
        if not match:
            raise ValueError(f"layers: {piece.strip()!r} is not an index or a range like 2-5")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ValueError(f"layers: the range {low}-{high} runs backwards")
        chosen.update(range(low, high + 1))
    return frozenset(chosen)


def parse_parts(text: str) -> frozenset[str] | None:
    """ "q,k,v" -> {"q", "k", "v"}; "" -> None (every part)."""
    if not text.strip():
        return None
    chosen = {piece.strip() for piece in text.split(",")}
    unknown = sorted(chosen - set(PARTS))
    if unknown:
        raise ValueError(f"parts: {unknown[0]!r} is not one of {', '.join(PARTS)}")
    return frozenset(chosen)


@dataclass(frozen=True)
class Scope:
    layers: frozenset[int] | None = None  # None: every layer
    parts: frozenset[str] | None = None  # None: every part

    @classmethod
    def of(cls, config) -> Scope:
        return cls(
            parse_layers(getattr(config, "layers", "")),
            parse_parts(getattr(config, "parts", "")),
        )

    @property
    def everything(self) -> bool:
        return self.layers is None and self.parts is None

    def holds(self, name: str) -> bool:
        if self.layers is not None and layer_of(name) not in self.layers:
            return False
        # A fused linear (qkv, gate_up) is chosen by its own name only.
        return self.parts is None or part_of(name) in self.parts

    def overlaps(self, other: Scope) -> bool:
        layers = self.layers is None or other.layers is None or self.layers & other.layers
        parts = self.parts is None or other.parts is None or self.parts & other.parts
        return bool(layers and parts)

    def check_layers(self, pass_name: str, layer_count: int) -> None:
        """Refuse, in one line, layers a ``layer_count``-layer model lacks."""
        missing = sorted(i for i in self.layers or () if i >= layer_count)
        if missing:
            raise ValueError(
                f"{pass_name}: layer {missing[0]} is not in this {layer_count}-layer model "
                f"(0-{layer_count - 1})"
            )

    def select(self, pass_name: str, linears: list, layer_count: int | None) -> list:
        """The (name, module) pairs in scope; refuses layers the model lacks
        and a scope that selects nothing, in one line."""
        if layer_count is not None:
            self.check_layers(pass_name, layer_count)
        chosen = [(name, module) for name, module in linears if self.holds(name)]
        if linears and not chosen:
            raise ValueError(f"{pass_name}: its layers and parts select no linear of this model")
        return chosen
