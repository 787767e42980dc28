"""GPTQ (Frantar et al., 2022) for group-wise asymmetric int4.

Why by hand: torchao's GPTQ produces its CUDA int4 layout and the CPU
kernel we run needs its own packing; the algorithm itself is short. This
is the standard version: columns quantised in order, each one's rounding
error spread over the not-yet-quantised columns through the inverse
Hessian of the layer's inputs, in blocks of one quantisation group, with
each group's scale and minimum taken from the already-updated weights.
Hessians come from the float model on calibration text (not sequentially
from the quantised model: simpler, and it already beats round-to-nearest).

Act-order (``act_order=True``): columns are quantised in order of
decreasing Hessian diagonal (the inputs that carry most energy first, while
most columns are still free to absorb their error). The kernel's groups are
runs of consecutive original columns, so each group's scale and minimum are
fixed first from the weights in original order ("static groups", as in
IST-DASLab/gptq and AutoGPTQ's ``static_groups``); a column then rounds on
its own group's grid wherever it falls in the processing order.
"""

from __future__ import annotations

import torch

from core.models.quantized_linear import pad_columns


def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    group_size: int,
    damp: float = 0.01,
    act_order: bool = False,
    integer_zero: bool = False,
):
    """Returns (q int32 [N, Kp], scale [N, Kp/g], minimum [N, Kp/g]), Kp padded.

    ``integer_zero``: each group's grid spans zero and its minimum is a whole
    number of scales below it (minimum = -zero * scale, zero an integer in
    [0, 15]), the form ONNX Runtime's MatMulNBits stores (uint8 zero points);
    otherwise the minimum is any float (our torch kernel's form)."""
    w = pad_columns(weight.detach().float().cpu().clone(), group_size)
    n, k = w.shape
    h = torch.eye(k)
    h[: hessian.shape[0], : hessian.shape[1]] = hessian
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    groups = k // group_size
    if act_order:  # static groups, from the weights in original order
        grouped = w.reshape(n, groups, group_size)
        scales, minimums = _grid(grouped.amin(dim=-1), grouped.amax(dim=-1), integer_zero)
        order = torch.argsort(torch.diag(h), descending=True, stable=True)
        w, h = w[:, order], h[order][:, order]
        column_group = order // group_size  # each processed column's group
    h += damp * torch.mean(torch.diag(h)) * torch.eye(k)
    h_inv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)

    q = torch.zeros(n, k, dtype=torch.int32)
    if not act_order:
        scales, minimums = torch.zeros(n, groups), torch.zeros(n, groups)
    for start in range(0, k, group_size):
        end = start + group_size
        block = w[:, start:end].clone()
        block_inv = h_inv[start:end, start:end]
        errors = torch.zeros_like(block)
        if act_order:
            scale = scales[:, column_group[start:end]]
            lo = minimums[:, column_group[start:end]]
        else:  # this group's grid, from its weights as updated so far
            g = start // group_size
            scale_g, lo_g = _grid(block.amin(dim=1), block.amax(dim=1), integer_zero)
            scales[:, g], minimums[:, g] = scale_g, lo_g
            scale = scale_g[:, None].expand(n, group_size)
            lo = lo_g[:, None].expand(n, group_size)
        for i in range(group_size):
            column = block[:, i]
            level = torch.clamp(torch.round((column - lo[:, i]) / scale[:, i]), 0, 15)
            q[:, start + i] = level.to(torch.int32)
            error = (column - (level * scale[:, i] + lo[:, i])) / block_inv[i, i]
            block[:, i:] -= error.unsqueeze(1) * block_inv[i, i:].unsqueeze(0)
            errors[:, i] = error
        w[:, end:] -= errors @ h_inv[start:end, end:]
    if act_order:
        q = q[:, torch.argsort(order)]
    return q, scales, minimums


def _grid(lo: torch.Tensor, hi: torch.Tensor, integer_zero: bool):
    """Scale and minimum of the 16 levels from ``lo`` to ``hi`` per group."""
    if integer_zero:  # zero must be a level, so the grid spans it
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = ((hi - lo) / 15).clamp(min=1e-8)
    if integer_zero:
        lo = -torch.round(-lo / scale) * scale
    return scale, lo
