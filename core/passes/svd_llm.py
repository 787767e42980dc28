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
# (benchmarks/low_rank_quality.py --split dev).
DAMP = 0.01


@torch.no_grad()
def whitening_factor(gram: torch.Tensor, damp: float = DAMP) -> torch.Tensor:
    """Lower-triangular S (float64) with S S^T = X^T X + damping. ``gram``:
    sum (or mean) of x^T x over the calibration inputs."""
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


@torch.no_grad()
def whitened_spectrum(weight: torch.Tensor, factor: torch.Tensor | None) -> torch.Tensor:
    """Squared singular values (descending) of W S, or of W without a factor:
    the output (or weight) energy each rank carries."""
    w = weight.detach().double().cpu()
    if factor is not None:
        w = w @ factor.double()
    return torch.linalg.svdvals(w).pow(2)


@torch.no_grad()
def truncated_factors(
    weight: torch.Tensor, rank: int, factor: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(first [rank x in], second [out x rank]) with second @ first the best
    rank-``rank`` approximation of W in output error on the calibration
    inputs (with a whitening factor) or in weight error (without); the
    singular values are split evenly between the two."""
    w = weight.detach().double().cpu()
    if factor is not None:
        factor = factor.double()
        w = w @ factor
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    right = vh[:rank]
    if factor is not None:  # V_k^T S^-1, by a triangular solve rather than an inverse
        right = torch.linalg.solve_triangular(factor, right, upper=False, left=False)
    return root[:, None] * right, u[:, :rank] * root[None, :]


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
