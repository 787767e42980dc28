"""Structured: remove attention heads. q/k/v/o shrink for real.

Llama-style grouped-query attention shares each key/value head among a
group of query heads, so the same number of query heads goes from every
group (the fraction actually removed is the nearest achievable one, and
is reported); when groups have one head (plain multi-head attention), the
key/value head goes with it. GPT-2 (fused c_attn) removes q, k and v rows
together; Phi-3's fused qkv_proj ([q | k | v], grouped) the same way;
BERT encoders (plain multi-head) remove a head's query, key and value rows
and its columns of the attention output. Importance is measured
on calibration text: the norm of each head's output entering the output
projection, times that projection's weights for the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import UnsupportedModelError
from core.models.linear_layers import convert_conv1d_to_linear, replace_module
from core.passes.base import PassConfig, PassContext, option, register
from core.passes.blocks import (
    config_set,
    decoder_layers,
    linear_role,
    module_path,
    slice_linear,
)
from core.passes.calibration import require_calibration, run_calibration


def _attention(layer):
    attn = (
        getattr(layer, "self_attn", None)
        or getattr(layer, "attn", None)
        or getattr(layer, "attention", None)
    )
    known = ("q_proj", "qkv_proj", "c_attn", "self")
    # The output side too: OPT, Phi-1/2, GPT-J and CodeGen name theirs
    # out_proj or dense, and CodeGen's qkv_proj interleaves its heads unlike
    # Phi-3's [q | k | v]; their head layouts are not ones this pass knows.
    outputs = ("o_proj", "c_proj", "output")
    if (
        attn is None
        or not any(hasattr(attn, name) for name in known)
        or not any(hasattr(attn, name) for name in outputs)
    ):
        raise UnsupportedModelError(
            f"prune_heads: the attention of {type(layer).__name__} is not a layout it knows "
            "(q/k/v_proj or Phi-3's qkv_proj with o_proj, GPT-2's c_attn/c_proj or BERT's "
            "self.query/key/value)"
        )
    if (
        hasattr(attn, "c_attn")
        and attn.c_attn.out_features != 3 * _output_projection(attn).in_features
    ):
        # GPT-BigCode's multi-query c_attn is [q | one k | one v], split by
        # its embed_dim: not GPT-2's three equal parts.
        raise UnsupportedModelError(
            f"prune_heads: the attention of {type(layer).__name__} shares one key/value head "
            "(multi-query c_attn), a layout it does not know"
        )
    return attn


def _output_projection(attn):
    if hasattr(attn, "o_proj"):
        return attn.o_proj
    if hasattr(attn, "c_proj"):
        return attn.c_proj
    return attn.output.dense  # BERT


@register
@dataclass(frozen=True)
class PruneHeadsConfig(PassConfig):
    name = "prune_heads"
    kind = "prune"
    title = "Remove attention heads (structured)"
    needs_calibration = True
    fraction: float = option(
        0.25,
        label="heads removed",
        description="fraction of query heads removed per layer (nearest achievable value)",
        minimum=0.0,
        maximum=0.75,
        step=0.05,
    )

    def apply(self, model, context: PassContext):
        # The attention alone changes: any MLP (a mixture of experts too) may stay.
        convert_conv1d_to_linear(model)
        for layer in decoder_layers(model):  # an unknown layout is refused before any work
            _attention(layer)
        calibration = require_calibration(self.name, context.calibration)
        config = model.config
        heads, kv_heads, head_dim, kept_heads, kept_kv = head_counts(self.fraction, config)
        group = heads // kv_heads
        per_group_removed = (heads - kept_heads) // kv_heads if group > 1 else 0
        kv_removed = kv_heads - kept_kv
        if kept_heads == heads:
            context.notes.append(f"prune_heads: {self.fraction:.0%} rounds to no head removed")
            return model
        layers = decoder_layers(model)
        scores = measure_head_importance(model, layers, heads, head_dim, calibration, context)
        for index, layer in enumerate(layers):
            attn = _attention(layer)
            per_head = scores[index].view(kv_heads, group)
            if group > 1:
                keep_in_group = (
                    per_head.topk(group - per_group_removed, dim=1).indices.sort().values
                )
                q_heads = (keep_in_group + torch.arange(kv_heads)[:, None] * group).flatten()
                kv_keep = torch.arange(kv_heads)
            else:
                kv_keep = per_head[:, 0].topk(kv_heads - kv_removed).indices.sort().values
                q_heads = kv_keep
            _shrink_attention(model, attn, q_heads, kv_keep, head_dim)
        new_heads = len(q_heads)
        config.head_dim = head_dim  # keep it explicit once heads * head_dim != hidden
        config_set(config, new_heads, "num_attention_heads", "n_head")
        if hasattr(config, "num_key_value_heads"):
            config.num_key_value_heads = len(kv_keep)
        context.notes.append(
            f"prune_heads: {heads - new_heads} of {heads} query heads removed per layer "
            f"({(heads - new_heads) / heads:.0%}; asked {self.fraction:.0%})"
        )
        return model

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import resized

        heads, kv_heads, head_dim, new_heads, new_kv = head_counts(self.fraction, model_config)
        out = []
        for e in entries:
            role = linear_role(e.name) if e.is_linear and e.component == "attention" else None
            if role == "q":
                e = resized(e, out_features=new_heads * head_dim)
            elif role == "kv":
                e = resized(e, out_features=new_kv * head_dim)
            elif role == "qkv":  # fused [q | k | v]
                e = resized(e, out_features=(new_heads + 2 * new_kv) * head_dim)
            elif role == "o":
                e = resized(e, in_features=new_heads * head_dim)
            out.append(e)
        return out


def _rows(heads: torch.Tensor, head_dim: int, offset: int = 0) -> torch.Tensor:
    return (heads[:, None] * head_dim + torch.arange(head_dim)).flatten() + offset


def _shrink_attention(model, attn, q_heads, kv_keep, head_dim) -> None:
    prefix = module_path(model, attn)
    q_rows = _rows(q_heads, head_dim)
    if hasattr(attn, "q_proj"):
        kv_rows = _rows(kv_keep, head_dim)
        replace_module(model, f"{prefix}.q_proj", slice_linear(attn.q_proj, rows=q_rows))
        replace_module(model, f"{prefix}.k_proj", slice_linear(attn.k_proj, rows=kv_rows))
        replace_module(model, f"{prefix}.v_proj", slice_linear(attn.v_proj, rows=kv_rows))
        replace_module(model, f"{prefix}.o_proj", slice_linear(attn.o_proj, columns=q_rows))
        attn.num_key_value_groups = len(q_heads) // len(kv_keep)
    elif hasattr(attn, "qkv_proj"):  # Phi-3: qkv_proj rows are [q | k | v]
        q_width = attn.o_proj.in_features
        kv_width = (attn.qkv_proj.out_features - q_width) // 2
        kv_rows = _rows(kv_keep, head_dim)
        rows = torch.cat([q_rows, kv_rows + q_width, kv_rows + q_width + kv_width])
        replace_module(model, f"{prefix}.qkv_proj", slice_linear(attn.qkv_proj, rows=rows))
        replace_module(model, f"{prefix}.o_proj", slice_linear(attn.o_proj, columns=q_rows))
        # Its forward splits q from k and v by the (shared) config's head count.
        attn.num_key_value_heads = len(kv_keep)
        attn.num_key_value_groups = len(q_heads) // len(kv_keep)
    elif hasattr(attn, "self"):  # BERT: query/key/value in .self, output.dense after
        for part in ("query", "key", "value"):
            linear = getattr(attn.self, part)
            replace_module(model, f"{prefix}.self.{part}", slice_linear(linear, rows=q_rows))
        dense = attn.output.dense
        replace_module(model, f"{prefix}.output.dense", slice_linear(dense, columns=q_rows))
        # BERT reshapes by head size, so only the bookkeeping needs the new count.
        attn.self.num_attention_heads = len(q_heads)
        attn.self.all_head_size = len(q_heads) * head_dim
    else:  # GPT-2: c_attn rows are [q | k | v], each embed_dim wide
        embed = attn.c_attn.out_features // 3
        rows = torch.cat([q_rows + part * embed for part in range(3)])
        replace_module(model, f"{prefix}.c_attn", slice_linear(attn.c_attn, rows=rows))
        replace_module(model, f"{prefix}.c_proj", slice_linear(attn.c_proj, columns=q_rows))
        attn.num_heads = len(q_heads)
        attn.split_size = len(q_heads) * head_dim


@torch.no_grad()
def measure_head_importance(model, layers, heads, head_dim, calibration, context):
    sums = [torch.zeros(heads) for _ in layers]

    def hook_for(i):
        def hook(_module, inputs):
            x = inputs[0].detach().float().reshape(-1, heads, head_dim)
            sums[i] += x.norm(dim=-1).sum(0).cpu()

        return hook

    projections = [_output_projection(_attention(layer)) for layer in layers]
    handles = [p.register_forward_pre_hook(hook_for(i)) for i, p in enumerate(projections)]
    try:
        context.progress_fraction(0, 1, "Measuring attention head importance")
        run_calibration(model, calibration, context.cancel)
    finally:
        for handle in handles:
            handle.remove()
    return [
        sums[i] * p.weight.detach().float().cpu().view(-1, heads, head_dim).norm(dim=(0, 2))
        for i, p in enumerate(projections)
    ]


def head_counts(fraction: float, config) -> tuple[int, int, int, int, int]:
    """(heads, kv heads, head dim, heads kept, kv heads kept) for a fraction."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    group = heads // kv_heads
    if group > 1:
        return heads, kv_heads, head_dim, heads - round(fraction * group) * kv_heads, kv_heads
    kept = kv_heads - round(fraction * kv_heads)
    return heads, kv_heads, head_dim, kept, kept
