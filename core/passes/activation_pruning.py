"""What the activation-aware pruning passes (Wanda, SparseGPT) share: the
sparsity and pattern options, the N:M masks, the honest notes, and the
block-by-block application on calibration text.

Honest labels: the zeros are stored dense, so size and speed do not change.
The N:M patterns (2 of every 4, 4 of every 8 consecutive input weights
zero) are what sparse tensor-core kernels run faster; none exists on the
CPU, so here they only preview the accuracy such a model would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.models.linear_layers import (
    linears_to_change,
)
from core.passes.base import PassConfig, PassContext, option
from core.passes.block_by_block import prune_block_by_block
from core.passes.calibration import require_calibration
from core.passes.prune_unstructured import DENSE_NOTE

UNSTRUCTURED = "unstructured"
PATTERNS = (UNSTRUCTURED, "2:4", "4:8")


def nm_of(pattern: str) -> tuple[int, int] | None:
    """(n, m) for an "n:m" pattern, None for unstructured."""
    if pattern == UNSTRUCTURED:
        return None
    n, m = pattern.split(":")
    return int(n), int(m)


def nm_note(pattern: str) -> str:
    n, m = nm_of(pattern)
    return (
        f"{pattern} sparsity ({n} of every {m} weights zero) is an accuracy preview: no CPU "
        f"speed gain ({pattern} kernels are GPU-only); the zeros are stored dense, so size "
        "and speed are unchanged."
    )


def smallest_per_row(score: torch.Tensor, count: int) -> torch.Tensor:
    """A mask of the ``count`` lowest scores in every row (ties: lower column first)."""
    mask = torch.zeros_like(score, dtype=torch.bool)
    if count:
        order = torch.sort(score, dim=1, stable=True).indices
        mask.scatter_(1, order[:, :count], True)
    return mask


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """A mask of the ``n`` lowest scores in every group of ``m`` consecutive
    columns of every row."""
    rows, columns = score.shape
    groups = score.reshape(rows, columns // m, m)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, torch.topk(groups, n, dim=2, largest=False).indices, True)
    return mask.reshape(rows, columns)


@dataclass(frozen=True)
class ActivationPruningConfig(PassConfig):
    """Base of prune_wanda and prune_sparsegpt (not registered itself)."""

    kind = "prune"
    needs_calibration = True
    sparsity: float = option(
        0.5,
        label="sparsity",
        description="fraction of block weights set to zero (unstructured; 2:4 and 4:8 are 50%)",
        minimum=0.0,
        maximum=0.95,
        step=0.05,
    )
    pattern: str = option(
        UNSTRUCTURED,
        label="pattern",
        description="unstructured: any weights; 2:4 / 4:8: that many of every 4 / 8 inputs "
        "(an accuracy preview: no CPU speed gain, the kernels are GPU-only)",
        choices=PATTERNS,
    )

    def conflict(self) -> str | None:
        if self.pattern != UNSTRUCTURED and self.sparsity != 0.5:
            n, m = nm_of(self.pattern)
            return (
                f"{self.name}: pattern {self.pattern} zeroes {n} of every {m} weights (50%); "
                f"set sparsity to 0.5 or choose unstructured (got {self.sparsity:g})"
            )
        return None

    def statistic(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """Fold a calibration input (tokens x in_features) into a linear's statistic."""
        raise NotImplementedError

    def prune_weight(self, name: str, weight: torch.Tensor, statistic) -> torch.Tensor:
        raise NotImplementedError

    def apply(self, model, context: PassContext):
        problem = self.conflict()
        if problem:
            raise ValueError(problem)
        calibration = require_calibration(self.name, context.calibration)
        linears = linears_to_change(self.name, model)
        nm = nm_of(self.pattern)
        if nm is not None:
            uneven = [n for n, m in linears if m.in_features % nm[1]]
            if uneven:
                raise ValueError(
                    f"{self.name}: pattern {self.pattern} needs input widths divisible by "
                    f"{nm[1]}; {uneven[0]} has {dict(linears)[uneven[0]].in_features}"
                )
        model.eval()  # a private copy: no dropout while collecting statistics
        prune_block_by_block(
            model, linears, calibration, context, self.name, self.statistic, self.prune_weight
        )
        context.notes.append(DENSE_NOTE if nm is None else nm_note(self.pattern))
        return model
