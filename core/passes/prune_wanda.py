"""Wanda (Sun et al., 2023, "A Simple and Effective Pruning Approach for
Large Language Models"): a weight's importance is |W_ij| * ||X_j||_2, its
magnitude times the norm of the input it multiplies over the calibration
tokens, and each output row loses its least important weights (Wanda's
comparison group: per row, not per layer). No weight is updated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.passes.activation_pruning import (
    ActivationPruningConfig,
    nm_mask,
    nm_of,
    smallest_per_row,
)
from core.passes.base import register
from core.passes.block_by_block import column_sq_norms


def wanda_prune(
    weight: torch.Tensor, input_sq_norms: torch.Tensor, sparsity: float, pattern: str
) -> torch.Tensor:
    """``weight`` with Wanda's pruned weights set to zero (a new tensor).
    ``input_sq_norms``: sum of squared inputs per input column."""
    score = weight.detach().abs().float() * input_sq_norms.sqrt().to(weight.device)
    nm = nm_of(pattern)
    if nm is None:
        mask = smallest_per_row(score, round(weight.shape[1] * sparsity))
    else:
        mask = nm_mask(score, *nm)
    return weight.detach().masked_fill(mask, 0)


@register
@dataclass(frozen=True)
class PruneWandaConfig(ActivationPruningConfig):
    name = "prune_wanda"
    title = "Wanda pruning (|weight| x input norm; zeros, dense storage)"

    def statistic(self, x, state):
        return column_sq_norms(x, state)

    def prune_weight(self, name, weight, statistic):
        return wanda_prune(weight, statistic, self.sparsity, self.pattern)
