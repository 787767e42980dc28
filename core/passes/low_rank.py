"""Low-rank factorisation: each block linear W (out x in) becomes two
linears from its truncated SVD, B (out x r) @ A (r x in), with
r = rank_ratio * min(out, in). Layers where r * (in + out) would not be
smaller than in * out are left alone (no saving in bytes or work)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.models.linear_layers import (
    linears_to_change,
    replace_module,
)
from core.passes.base import PassConfig, PassContext, option, register


def factor_rank(out_features: int, in_features: int, ratio: float) -> int | None:
    """The rank to use, or None when factorising would not save anything."""
    rank = max(1, round(ratio * min(out_features, in_features)))
    return rank if rank * (in_features + out_features) < in_features * out_features else None


@torch.no_grad()
def factorise(linear: nn.Linear, rank: int) -> nn.Sequential:
    weight = linear.weight.detach().float()
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(linear.in_features, rank, bias=False)
    second = nn.Linear(rank, linear.out_features, bias=linear.bias is not None)
    first.weight.copy_(root[:, None] * vh[:rank])
    second.weight.copy_(u[:, :rank] * root[None, :])
    if linear.bias is not None:
        second.bias.copy_(linear.bias)
    return nn.Sequential(first, second).to(device=linear.weight.device, dtype=linear.weight.dtype)


@register
@dataclass(frozen=True)
class LowRankConfig(PassConfig):
    """Plain truncated SVD without calibration: a baseline that collapses most language models at any ratio that saves bytes (the default model: perplexity x2.6 million at 20% fewer block parameters, against x1.7 for the loss-aware SVD-LLM pass; benchmarks/low_rank_quality.py)."""  # noqa: E501 (the window's one-line tooltip)

    name = "low_rank"
    kind = "low_rank"
    title = "Low-rank factorisation (plain SVD, a baseline)"
    rank_ratio: float = option(
        0.5,
        label="rank ratio",
        description="kept rank as a fraction of min(out, in); layers that would not shrink stay",
        minimum=0.05,
        maximum=0.95,
        step=0.05,
    )

    def apply(self, model, context: PassContext):
        layers = linears_to_change(self.name, model)
        skipped = 0
        for index, (name, linear) in enumerate(layers):
            context.cancel.raise_if_cancelled()
            rank = factor_rank(linear.out_features, linear.in_features, self.rank_ratio)
            if rank is None:
                skipped += 1
                continue
            replace_module(model, name, factorise(linear, rank))
            context.progress_fraction(index + 1, len(layers), f"low-rank: {name}")
        if skipped:
            context.notes.append(
                f"low_rank: {skipped} of {len(layers)} layers left whole (no saving at this rank)"
            )
        return model

    def estimate(self, entries, model_config):
        from dataclasses import replace

        from core.passes.size_estimate import resized

        out = []
        for e in entries:
            rank = (
                factor_rank(e.out_features, e.in_features, self.rank_ratio) if e.is_linear else None
            )
            if rank is None:
                out.append(e)
                continue
            first = replace(e, name=f"{e.name}.0", has_bias=False)
            second = replace(e, name=f"{e.name}.1")
            out += [resized(first, out_features=rank), resized(second, in_features=rank)]
        return out
