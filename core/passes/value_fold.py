"""A per-channel scale on the attention output projection's input, folded
into the value projection's rows.

o_proj reads the attention-weighted values of each query head: a sum over
positions of v, so linear in each of v's output channels. Dividing a value
row by s and multiplying the o_proj columns it feeds by s keeps the function
exactly. Under grouped-query attention one value head serves ``repeat``
query heads (query head h reads value head h // repeat, transformers'
``repeat_kv``), so one value channel feeds ``repeat`` o_proj columns, which
must then share one scale. The fold is checked like SmoothQuant's: the layer
is rerun on its traced input and must give its traced output, else it is
undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# SmoothQuant's check (private there: choose_defaults records smooth_quant.py's
# hash, so that file is left unchanged).
from core.passes.smooth_quant import _unchanged as unchanged


@dataclass
class ValueGroup:
    producer: nn.Linear  # v_proj, or the fused q/k/v projection
    rows: slice  # the producer's value rows
    consumer: nn.Linear  # o_proj
    repeat: int  # query heads per value head
    head_dim: int
    label: str

    @property
    def consumers(self) -> list[nn.Linear]:
        return [self.consumer]

    def shared(self, per_column: torch.Tensor) -> torch.Tensor:
        """A per-column statistic of o_proj's input averaged over the columns
        one value channel feeds, so a scale made from it is shared by them."""
        heads = per_column.view(-1, self.repeat, self.head_dim)
        return heads.mean(1, keepdim=True).expand_as(heads).reshape(-1)

    def value_scale(self, column_scale: torch.Tensor) -> torch.Tensor:
        return column_scale.view(-1, self.repeat, self.head_dim)[:, 0].reshape(-1)


def value_output_group(block: nn.Module) -> ValueGroup | None:
    """The layer's v -> o_proj pair (Llama-style v_proj/o_proj, Phi-3's fused
    qkv_proj [q | k | v], GPT-2's c_attn/c_proj), or None."""
    attention = getattr(block, "self_attn", None) or getattr(block, "attn", None)
    out = getattr(attention, "o_proj", None) or getattr(attention, "c_proj", None)
    if not isinstance(out, nn.Linear):
        return None
    groups = getattr(attention, "num_key_value_groups", 1)
    width = out.in_features  # query heads x head_dim
    if width % groups:
        return None
    values = width // groups
    head_dim = getattr(attention, "head_dim", None) or getattr(attention, "head_size", None)
    if not head_dim or values % head_dim:
        return None
    value = getattr(attention, "v_proj", None)
    if isinstance(value, nn.Linear) and value.out_features == values:
        return ValueGroup(value, slice(None), out, groups, head_dim, "v_proj -> o_proj")
    fused = getattr(attention, "qkv_proj", None) or getattr(attention, "c_attn", None)
    if isinstance(fused, nn.Linear) and fused.out_features == width + 2 * values:
        rows = slice(width + values, None)  # [q | k | v]
        return ValueGroup(fused, rows, out, groups, head_dim, "v rows -> output projection")
    return None


@torch.no_grad()
def fold_value_checked(layer: nn.Module, trace, group: ValueGroup, column_scale) -> bool:
    """Fold ``column_scale`` (o_proj's input, shared as ``shared`` makes it)
    and keep it only if the layer still computes what it did."""
    producer, consumer = group.producer, group.consumer
    params = [p for p in (producer.weight, producer.bias, consumer.weight) if p is not None]
    saved = [p.detach().clone() for p in params]
    s = group.value_scale(column_scale).to(producer.weight.device)
    rows = producer.weight.data[group.rows]
    rows.copy_((rows.float() / s[:, None]).to(rows.dtype))
    if producer.bias is not None:
        part = producer.bias.data[group.rows]
        part.copy_((part.float() / s).to(part.dtype))
    weight = consumer.weight
    weight.copy_((weight.float() * column_scale.to(weight.device)[None, :]).to(weight.dtype))
    if trace is not None and trace.output is not None and unchanged(layer, trace):
        return True
    for param, value in zip(params, saved, strict=True):
        param.copy_(value)
    return False
