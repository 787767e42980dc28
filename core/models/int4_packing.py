"""The 4-bit values of an int4 weight, in the layout each device's kernel
reads. torch's CPU kernel (``_weight_int4pack_mm_for_cpu``) and its CUDA
kernel (tinygemm, ``_weight_int4pack_mm``) take the same values, scales and
zeros but pack them differently, and torch converts only one way (values to
its layout). Why by hand: moving a packed module between devices needs the
values back; torch has no unpacking op, so ``unpack_int4`` finds where each
value lands by packing index digits through torch's own converter (the
layout is a fixed permutation for a given shape) and inverts it.

The stored (exported, measured) form is always the CPU layout: uint8
[rows, k / 2]; on CUDA the module holds tinygemm's int32 layout of the same
bytes.
"""

from __future__ import annotations

import functools

import torch


def inner_k_tiles(k: int) -> int:
    """tinygemm's tile count along k: the largest of 8, 4, 2 that divides it."""
    return next(t for t in (8, 4, 2) if k % (16 * t) == 0)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int32 values in [0, 15], shape [n, k], packed for the kernel of ``q.device``."""
    if q.device.type == "cuda":
        high_first = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
        return torch.ops.aten._convert_weight_to_int4pack(high_first, inner_k_tiles(q.shape[1]))
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 8)


def unpack_int4(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """The int32 [n, k] values ``pack_int4`` packed into ``packed`` (on its device)."""
    positions = _positions(packed.device.type, packed.device.index, n, k)
    q = torch.empty(n * k, dtype=torch.int32)
    q[positions] = _nibbles(packed.cpu()).to(torch.int32)
    return q.reshape(n, k).to(packed.device)


def int4_mm(x: torch.Tensor, packed, group_size: int, scales_and_zeros) -> torch.Tensor:
    """bf16 [m, k] times the packed weight's transpose, on the weight's device."""
    if packed.device.type == "cuda":
        return torch.ops.aten._weight_int4pack_mm(x, packed, group_size, scales_and_zeros)
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group_size, scales_and_zeros)


def _nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Every 4-bit field of ``packed`` in memory order (low bits first)."""
    bits = 8 * packed.element_size()
    words = packed.contiguous().reshape(-1).to(torch.int64) & ((1 << bits) - 1)
    shifts = torch.arange(0, bits, 4, dtype=torch.int64)
    return ((words[:, None] >> shifts) & 15).reshape(-1)


@functools.lru_cache(maxsize=64)
def _positions(device_type: str, index: int | None, n: int, k: int) -> torch.Tensor:
    """For each 4-bit field of a packed [n, k] weight, the flat index of the
    value it holds: pack the index's base-16 digits one at a time."""
    device = torch.device(device_type, index) if index is not None else torch.device(device_type)
    flat = torch.arange(n * k, dtype=torch.int64)
    positions = torch.zeros(n * k, dtype=torch.int64)
    digit = 0
    while (n * k - 1) >> (4 * digit) or digit == 0:
        values = ((flat >> (4 * digit)) & 15).to(torch.int32).reshape(n, k)
        fields = _nibbles(pack_int4(values.to(device)).cpu())
        if fields.numel() != n * k:
            raise ValueError(f"int4 packing of [{n}, {k}] holds {fields.numel()} values")
        positions |= fields << (4 * digit)
        digit += 1
    if not torch.equal(torch.sort(positions).values, flat):
        raise ValueError(f"int4 packing of [{n}, {k}] on {device_type} is not a permutation")
    return positions
