"""Per-layer ranks that meet a parameter budget, and the shape-only count of
what they cost.

The budget is met per *class*: block linears of the same part and shape
(every layer's q_proj, every layer's down_proj, ...). Each class keeps
(1 - reduction) of its weights as rank-r factor pairs, a pool of ranks
fixed by shapes alone; calibration decides only how the pool is shared
among the class's layers (SVD-LLM V2's grouping by weight type). So the
size estimate, which sees shapes and never weights, is exact, while the
ranks still follow each layer's spectrum. A class whose pool would not make
its layers smaller stays dense.
"""

from __future__ import annotations

import torch

from core.models.linear_layers import component_of

# How a class's ranks are shared among its layers, from each layer's squared
# singular values (of W S for SVD-LLM, of W for plain SVD):
# "relative": keep the largest shares of each layer's own total energy
#   (the same fraction of output energy costs the same wherever it is lost);
# "absolute": keep the largest squared singular values as they are;
# "uniform": the same rank for every layer (SVD-LLM V1).
ALLOCATIONS = ("relative", "absolute", "uniform")


def class_key(name: str, component: str, out_features: int, in_features: int) -> tuple:
    """Which class a block linear belongs to: its component, its part (the
    module's last name) and its shape."""
    return component, name.rsplit(".", 1)[-1], out_features, in_features


def linear_class(name: str, linear) -> tuple:
    return class_key(name, component_of(name), linear.out_features, linear.in_features)


def max_saving_rank(out_features: int, in_features: int) -> int:
    """The largest rank r whose factors are smaller than the dense weight:
    r * (in + out) < in * out (0 when none is)."""
    return (out_features * in_features - 1) // (out_features + in_features)


def rank_pool(count: int, out_features: int, in_features: int, reduction: float) -> int | None:
    """The total rank the ``count`` layers of one class keep so that at least
    ``reduction`` of their weights go, or None when the class stays dense
    (no rank of at least 1 per layer saves anything)."""
    top = max_saving_rank(out_features, in_features)
    if top < 1:
        return None
    kept = (1.0 - reduction) * count * out_features * in_features / (out_features + in_features)
    pool = max(int(kept), count)  # at least rank 1 per layer
    return pool if pool <= count * top else None


def even_ranks(pool: int, count: int) -> list[int]:
    """``pool`` shared as evenly as possible (the first layers take the remainder)."""
    share, extra = divmod(pool, count)
    return [share + (i < extra) for i in range(count)]


def allocate(energies: list[torch.Tensor], count: int, pool: int, top: int, rule: str) -> list[int]:
    """Ranks (each in [1, top], summing to ``pool``) for the layers of one
    class, given each layer's squared singular values in descending order
    (none needed for "uniform"):
    every layer keeps its first one, then the ``pool - count`` largest scores
    among the rest win. Scores fall along each spectrum, so every layer
    keeps a prefix of it."""
    if rule == "uniform":
        return even_ranks(pool, count)
    if rule not in ALLOCATIONS:
        raise ValueError(f"unknown allocation rule {rule!r}")
    scores, owners = [], []
    for index, energy in enumerate(energies):
        energy = energy.double().clamp(min=0)
        if rule == "relative":
            energy = energy / energy.sum().clamp(min=torch.finfo(torch.float64).tiny)
        scores.append(energy[1:top])
        owners.append(torch.full((scores[-1].numel(),), index))
    chosen = torch.topk(torch.cat(scores), pool - count, sorted=False).indices
    extra = torch.bincount(torch.cat(owners)[chosen], minlength=count)
    return [1 + int(e) for e in extra]
