"""SVD-LLM's truncation-aware whitening (Wang et al., 2024, "SVD-LLM:
Truncation-aware Singular Value Decomposition for Large Language Model
Compression").

Plain SVD keeps the weight W closest to the original; what matters is the
layer's output W X on real inputs. With S the Cholesky factor of the
inputs' Gram matrix (X^T X = S S^T), ||(W - W') X^T|| = ||(W - W') S||, so
the best rank-k W' is the truncated SVD of W S mapped back:
W S = U Sigma V^T, W' = U_k Sigma_k (V_k^T S^-1), and the output error it
leaves is exactly the dropped singular values (sum of sigma_i^2). Those
singular values are therefore the per-layer sensitivity the rank
allocation reads.

Everything is computed in float64: the Cholesky factor of a badly
conditioned Gram matrix and its inverse lose too much in float32.

Loss-aware outputs (Fisher-weighted SVD, Hsu et al., 2022): not every
output matters as much to the model's loss. With D the root of each
output's mean squared loss gradient, the truncated SVD of D W S minimises
||D (W - W') S||, a second-order estimate of the loss increase, and its
dropped singular values estimate that increase in the same units for every
layer; that is what lets the ranks be shared across all layers of the
model (core.passes.rank_budget).
"""

from __future__ import annotations

import torch
from torch import nn

# Fraction of the Gram matrix's mean diagonal added to its diagonal before
# the Cholesky factorisation. X^T X is only positive semi-definite: inputs
# that are always zero, or fewer calibration tokens than input features,
# make it singular, and then no Cholesky factor exists. The damping makes
# it definite and bounds S^-1; it also pulls the objective slightly towards
# plain SVD's weight error. Chosen on the dev split
# (benchmarks/results/low_rank_quality_dev_choices_cpu_2core.txt: 20% of the
# default model's block-linear weights removed, 1.90x the original's
# perplexity at 0.01, 1.93x at 0.1).
DAMP = 0.01


@torch.no_grad()
def whitening_factor(gram: torch.Tensor, damp: float | None = None) -> torch.Tensor:
    """Lower-triangular S (float64) with S S^T = X^T X + damping. ``gram``:
    sum (or mean) of x^T x over the calibration inputs."""
    damp = DAMP if damp is None else damp
    h = gram.detach().double().clone()
    diagonal = torch.diagonal(h)
    dead = diagonal == 0
    diagonal[dead] = 1  # an input that never carries anything: weight it like a unit input
    mean = diagonal.mean()
    diagonal.add_(damp * mean)
    factor, info = torch.linalg.cholesky_ex(h)
    shift = damp * mean
    while info.item() != 0:  # rounding left it indefinite: damp harder until it is not
        shift = shift * 10 if shift > 0 else mean * 1e-8
        diagonal.add_(shift)
        factor, info = torch.linalg.cholesky_ex(h)
    return factor


# Fraction of the mean output Fisher added to each output's: an output
# whose gradient was never seen keeps a little weight rather than none.
# Chosen on the dev split like DAMP (1.90x at 0.01, 1.92x at 0.1).
OUTPUT_DAMP = 0.01


def output_scale(fisher: torch.Tensor, damp: float | None = None) -> torch.Tensor:
    """D (float64): the root of each output's damped mean squared gradient."""
    f = fisher.double().clamp(min=0)
    mean = f.mean()
    if mean == 0:  # no gradient reached this layer: weigh its outputs alike
        return torch.ones_like(f)
    return (f + (OUTPUT_DAMP if damp is None else damp) * mean).sqrt()


def _scaled(weight, factor, scale) -> torch.Tensor:
    w = weight.detach().double().cpu()
    if factor is not None:
        w = w @ factor.double()
    if scale is not None:
        w = scale.double()[:, None] * w
    return w


@torch.no_grad()
def whitened_spectrum(weight, factor=None, scale=None) -> torch.Tensor:
    """Squared singular values (descending) of D W S (each side optional):
    the output error, or with D the estimated loss, each rank carries."""
    return torch.linalg.svdvals(_scaled(weight, factor, scale)).pow(2)


@torch.no_grad()
def truncated_factors(
    weight: torch.Tensor,
    rank: int,
    factor: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(first [rank x in], second [out x rank]) with second @ first the best
    rank-``rank`` approximation of W in ||D (W - W') S|| (plain weight error
    without either); the singular values are split evenly between the two."""
    u, s, vh = torch.linalg.svd(_scaled(weight, factor, scale), full_matrices=False)
    root = s[:rank].sqrt()
    right, left = vh[:rank], u[:, :rank]
    if factor is not None:  # V_k^T S^-1, by a triangular solve rather than an inverse
        right = torch.linalg.solve_triangular(factor.double(), right, upper=False, left=False)
    if scale is not None:
        left = left / scale.double()[:, None]
    return root[:, None] * right, left * root[None, :]


def factor_pair(linear: nn.Linear, first: torch.Tensor, second: torch.Tensor) -> nn.Sequential:
    """The low-rank pair the export and the size count already know: two
    nn.Linear in an nn.Sequential, the bias on the second."""
    rank = first.shape[0]
    pair = nn.Sequential(
        nn.Linear(linear.in_features, rank, bias=False),
        nn.Linear(rank, linear.out_features, bias=linear.bias is not None),
    )
    with torch.no_grad():
        pair[0].weight.copy_(first)
        pair[1].weight.copy_(second)
        if linear.bias is not None:
            pair[1].bias.copy_(linear.bias)
    return pair.to(device=linear.weight.device, dtype=linear.weight.dtype)
