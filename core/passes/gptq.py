"""GPTQ (Frantar et al., 2022) for group-wise asymmetric int4.

Why by hand: torchao's GPTQ produces its CUDA int4 layout and the CPU
kernel we run needs its own packing; the algorithm itself is short. This
is the standard version: columns quantised in order, each one's rounding
error spread over the not-yet-quantised columns through the inverse
Hessian of the layer's inputs, in blocks of one quantisation group, with
each group's scale and minimum taken from the already-updated weights.
Hessians come from the float model on calibration text (not sequentially
from the quantised model: simpler, and it already beats round-to-nearest).
"""

from __future__ import annotations

import torch

from core.models.quantized_linear import pad_columns


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, group_size: int, damp: float = 0.01):
    """Returns (q int32 [N, Kp], scale [N, Kp/g], minimum [N, Kp/g]), Kp padded."""
    w = pad_columns(weight.detach().float().clone(), group_size)
    n, k = w.shape
    h = torch.eye(k)
    h[: hessian.shape[0], : hessian.shape[1]] = hessian
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(k)
    h_inv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)

    q = torch.zeros(n, k, dtype=torch.int32)
    scales = torch.zeros(n, k // group_size)
    minimums = torch.zeros(n, k // group_size)
    for start in range(0, k, group_size):
        end = start + group_size
        block = w[:, start:end].clone()
        block_inv = h_inv[start:end, start:end]
        errors = torch.zeros_like(block)
        lo = block.amin(dim=1)
        scale = ((block.amax(dim=1) - lo) / 15).clamp(min=1e-8)
        g = start // group_size
        scales[:, g], minimums[:, g] = scale, lo
        for i in range(group_size):
            column = block[:, i]
            level = torch.clamp(torch.round((column - lo) / scale), 0, 15)
            q[:, start + i] = level.to(torch.int32)
            error = (column - (level * scale + lo)) / block_inv[i, i]
            block[:, i:] -= error.unsqueeze(1) * block_inv[i, i:].unsqueeze(0)
            errors[:, i] = error
        w[:, end:] -= errors @ h_inv[start:end, end:]
    return q, scales, minimums
