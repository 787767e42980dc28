"""SparseGPT (Frantar and Alistarh, 2023, "Massive Language Models Can Be
Accurately Pruned in One-Shot"): prune columns left to right and, like
GPTQ, spread each pruned weight's error over the not-yet-visited columns of
its row through the inverse Hessian of the layer's inputs (optimal brain
surgeon updates), so the layer's output on calibration text moves as little
as possible. The mask is chosen per block of 128 columns from
w^2 / [H^-1]_jj^2 over the whole block (the paper's adaptive mask: rows of a
block may lose different counts), or per group of m columns for N:M.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.passes.activation_pruning import ActivationPruningConfig, nm_of
from core.passes.base import register
from core.passes.block_by_block import gram

BLOCK = 128  # columns whose mask is chosen together (the reference's blocksize)
DAMP = 0.01  # fraction of the mean Hessian diagonal added to it (the reference's percdamp)


def _inverse_hessian_factor(hessian: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of the damped inverse Hessian; zeroes the
    columns of ``weight`` whose input is always zero (their Hessian row is)."""
    h = hessian.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    weight[:, dead] = 0
    columns = torch.arange(h.shape[0], device=h.device)
    h[columns, columns] += DAMP * torch.mean(torch.diag(h))
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


def sparsegpt_prune(
    weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, pattern: str
) -> torch.Tensor:
    """The pruned and updated weight (float32, a new tensor). ``hessian``:
    sum of x^T x over the calibration inputs (any positive factor)."""
    w = weight.detach().float().clone()
    h_inv = _inverse_hessian_factor(hessian.float().to(w.device), w)
    rows, columns = w.shape
    nm = nm_of(pattern)
    for start in range(0, columns, BLOCK):
        end = min(start + BLOCK, columns)
        block = w[:, start:end].clone()
        block_inv = h_inv[start:end, start:end]
        diag = torch.diag(block_inv)
        errors = torch.zeros_like(block)
        mask = torch.zeros_like(block, dtype=torch.bool)
        if nm is None:
            count = round(block.numel() * sparsity)
            if count:
                score = (block.pow(2) / diag.pow(2)).flatten()
                mask.view(-1)[torch.topk(score, count, largest=False).indices] = True
        for i in range(end - start):
            if nm is not None and i % nm[1] == 0:
                # Chosen on the weights as updated so far, group by group.
                score = block[:, i : i + nm[1]].pow(2) / diag[i : i + nm[1]].pow(2)
                picked = torch.topk(score, nm[0], dim=1, largest=False).indices
                mask[:, i : i + nm[1]].scatter_(1, picked, True)
            column = block[:, i]
            kept = column.masked_fill(mask[:, i], 0)
            error = (column - kept) / block_inv[i, i]
            block[:, i:] -= error.unsqueeze(1) * block_inv[i, i:].unsqueeze(0)
            block[:, i] = kept  # exactly zero where pruned
            errors[:, i] = error
        w[:, start:end] = block
        w[:, end:] -= errors @ h_inv[start:end, end:]
    return w


@register
@dataclass(frozen=True)
class PruneSparseGptConfig(ActivationPruningConfig):
    name = "prune_sparsegpt"
    title = "SparseGPT pruning (Hessian-corrected; zeros, dense storage)"

    def statistic(self, x, state):
        return gram(x, state)

    def prune_weight(self, name, weight, statistic):
        return sparsegpt_prune(weight, statistic, self.sparsity, self.pattern)
