"""The parts of a transformer that structured pruning cuts, for the
families we support: Llama-style (q/k/v/o_proj, gate/up/down_proj; Mistral,
Qwen2/3, Gemma 2/3, SmolLM are the same shape), Phi-3 (fused qkv_proj
[q | k | v] and gate_up_proj [gate | up]), GPT-2-style (fused c_attn,
c_fc/c_proj, converted from Conv1D to Linear first) and BERT encoders
(attention.self.query/key/value, attention.output.dense; intermediate.dense,
output.dense)."""

from __future__ import annotations

import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.models.config_check import text_config
from core.models.linear_layers import convert_conv1d_to_linear


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList holding the transformer blocks."""
    count = getattr(model.config, "num_hidden_layers", None) or model.config.n_layer
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(
        f"cannot find the transformer layers of {type(model).__name__} (one module per "
        f"layer, {count} in all; layers shared between positions, as ALBERT's, are not)"
    )


# Two-matrix MLPs (an elementwise activation between them, so each hidden
# neuron is one row of the first and one column of the second), by the
# names families give them: (producing, consuming).
TWO_MATRIX_MLPS = (
    ("up_proj", "down_proj"),  # Nemotron (squared ReLU, no gate)
    ("c_fc", "c_proj"),  # GPT-2, StarCoder2, GPT-BigCode
    ("fc1", "fc2"),  # Phi-1/2 (under mlp); OPT, XGLM, BioGPT (on the layer itself)
    ("fc_in", "fc_out"),  # GPT-J, CodeGen
    ("dense_h_to_4h", "dense_4h_to_h"),  # GPT-NeoX, Falcon, BLOOM
    ("lin1", "lin2"),  # DistilBERT (under ffn)
)
# Where a config records the MLP width, by family: the first it has is set
# (GPT-2's and GPT-J's n_inner defaults to None, meaning 4 x hidden).
WIDTH_FIELDS = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "hidden_dim")


def mlp_parts(layer: nn.Module) -> tuple[list[nn.Linear], nn.Linear]:
    """(layers producing the hidden MLP width, layer consuming it)."""
    mlp = getattr(layer, "mlp", None)
    if mlp is not None and all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
        return [mlp.gate_proj, mlp.up_proj], mlp.down_proj
    if mlp is not None and all(hasattr(mlp, n) for n in ("gate_up_proj", "down_proj")):
        return [mlp.gate_up_proj], mlp.down_proj  # Phi-3: rows are [gate | up]
    for holder in (mlp, getattr(layer, "ffn", None), layer):
        for up, down in TWO_MATRIX_MLPS:
            pair = getattr(holder, up, None), getattr(holder, down, None)
            if holder is not None and all(isinstance(m, nn.Linear) for m in pair):
                return [pair[0]], pair[1]
    intermediate, output = getattr(layer, "intermediate", None), getattr(layer, "output", None)
    if isinstance(getattr(intermediate, "dense", None), nn.Linear) and isinstance(
        getattr(output, "dense", None), nn.Linear
    ):
        return [intermediate.dense], output.dense
    raise UnsupportedModelError(
        f"{type(layer).__name__}: structured pruning does not know this MLP layout "
        "(gate/up/down_proj, Phi-3's gate_up_proj, up/down_proj, c_fc/c_proj, fc1/fc2, "
        "fc_in/fc_out, dense_h_to_4h/dense_4h_to_h, DistilBERT's lin1/lin2 or BERT's "
        "intermediate/output)"
    )


def mlp_width_field(config, pass_name: str) -> tuple[object, str]:
    """(config part, field name) where the family records its MLP width; a
    family whose config has none (BLOOM, MPT: 4 x hidden or a ratio) is
    refused, since a narrowed MLP would be exported unloadable."""
    text = text_config(config)
    for name in WIDTH_FIELDS:
        if hasattr(text, name):
            return text, name
    raise UnsupportedModelError(
        f"{pass_name}: {type(config).__name__} has no field for the MLP width "
        f"({', '.join(WIDTH_FIELDS)}); a narrowed MLP could not be reloaded"
    )


def set_mlp_width(config, width: int, pass_name: str) -> None:
    """Record the new MLP width where the family's config keeps it, so the
    export reloads."""
    holder, name = mlp_width_field(config, pass_name)
    old = getattr(holder, name)
    # A config carrying the width twice (OPT's ffn_dim beside an
    # intermediate_size): both change, or the folder disagrees with itself.
    for alias in WIDTH_FIELDS:
        if alias == name or (hasattr(holder, alias) and getattr(holder, alias) == old):
            setattr(holder, alias, width)


# The role of a block linear, from the end of its dotted name: what the
# structured-pruning estimates resize.
_ROLES = {
    "q_proj": "q",
    "query": "q",
    "k_proj": "kv",
    "v_proj": "kv",
    "key": "kv",
    "value": "kv",
    "c_attn": "qkv",
    "qkv_proj": "qkv",
    "o_proj": "o",
    "out_proj": "o",
    "self_attn.dense": "o",  # Phi-1/2, Persimmon
    "attention.dense": "o",  # GPT-NeoX
    "query_key_value": "qkv",
    "attention.output.dense": "o",
    "attn.c_proj": "o",
    "fc1": "up",
    "fc_in": "up",
    "dense_h_to_4h": "up",
    "fc2": "down",
    "lin1": "up",  # DistilBERT
    "lin2": "down",
    "fc_out": "down",
    "dense_4h_to_h": "down",
    "gate_proj": "up",
    "up_proj": "up",
    "gate_up_proj": "up",
    "c_fc": "up",
    "intermediate.dense": "up",
    "down_proj": "down",
    "mlp.c_proj": "down",
    "output.dense": "down",
}


def linear_role(name: str) -> str | None:
    """ "q", "kv", "qkv", "o", "up" or "down" for a block linear's module name."""
    parts = name.split(".")
    for length in (3, 2, 1):
        role = _ROLES.get(".".join(parts[-length:]))
        if role is not None:
            return role
    return None


def slice_linear(linear: nn.Linear, rows=None, columns=None) -> nn.Linear:
    """A new Linear keeping the given output rows and/or input columns."""
    weight = linear.weight.detach()
    bias = None if linear.bias is None else linear.bias.detach()
    if rows is not None:
        weight = weight[rows]
        bias = None if bias is None else bias[rows]
    if columns is not None:
        weight = weight[:, columns]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def prepare_for_structured_pruning(model: nn.Module, pass_name: str = "") -> None:
    """GPT-2's Conv1D made Linear; a family whose blocks structured pruning
    does not know is refused, named by the pass that asked."""
    convert_conv1d_to_linear(model)
    layer = decoder_layers(model)[0]
    try:
        mlp_parts(layer)
    except UnsupportedModelError as err:
        if not pass_name:
            raise
        raise UnsupportedModelError(f"{pass_name}: {err}") from None


def config_set(config, value, *names) -> None:
    """Set the first of ``names`` that the config has (names differ by family)."""
    for name in names:
        if hasattr(config, name):
            setattr(config, name, value)
            return
    setattr(config, names[0], value)


def module_path(root: nn.Module, target: nn.Module) -> str:
    """The dotted name of ``target`` inside ``root``."""
    return next(name for name, module in root.named_modules() if module is target)
