"""Reading whole rows (token embeddings) out of an int4 weight packed in the
CPU kernel's layout, so a tied head and embedding can share one int4 copy.

Why by hand: torch packs int4 only for its matmul and has no gather or
unpack op. Its CPU layout interleaves blocks of rows, but within a row the
4-bit fields sit at a fixed stride: value (r, c) is field ``first[r] +
step[r] * c``. ``row_fields`` finds ``first`` and ``step`` by packing a few
probe tensors through torch's own converter (as ``int4_packing.unpack_int4``
does) and then checks the rule on every value of a random weight, so a
torch whose layout is not row-strided is refused rather than misread.
"""

from __future__ import annotations

import functools

import torch

from core.models.int4_packing import pack_int4

_CHUNK_ROWS = 4096  # rows checked at once (bounds the index tensor's memory)


class RowLayoutError(ValueError):
    """This torch's int4 CPU packing does not keep each row at a fixed stride."""


def _fields(packed: torch.Tensor) -> torch.Tensor:
    """The 4-bit fields of a CPU-packed (uint8) weight in memory order, low bits first."""
    flat = packed.contiguous().reshape(-1)
    return torch.stack([flat & 15, flat >> 4], dim=-1).reshape(-1)


def gather_rows(
    packed: torch.Tensor, first: torch.Tensor, step: torch.Tensor, ids: torch.Tensor, k: int
) -> torch.Tensor:
    """The int4 values (int32, [*ids.shape, k]) of rows ``ids`` of a CPU-layout packed weight."""
    columns = torch.arange(k, device=ids.device)
    fields = first[ids].unsqueeze(-1) + step[ids].unsqueeze(-1) * columns
    data = packed.reshape(-1)[fields >> 1].to(torch.int32)
    return (data >> ((fields & 1) * 4).to(torch.int32)) & 15


@functools.lru_cache(maxsize=8)
def row_fields(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, step), int64 [n]: where row r's fields start and their stride in a
    CPU-packed [n, k] int4 weight. RowLayoutError if the layout has no such rule."""
    if k < 2:
        raise RowLayoutError(f"int4 rows of {k} values are too short to locate")
    marks = torch.zeros(n, k, dtype=torch.int32)
    marks[:, 0], marks[:, 1] = 1, 2
    fields = _fields(pack_int4(marks))
    at0, at1 = (fields == 1).nonzero().squeeze(1), (fields == 2).nonzero().squeeze(1)
    if at0.numel() != n or at1.numel() != n:
        raise RowLayoutError(f"int4 packing of [{n}, {k}] does not keep every value once")
    row0, row1 = torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.int64)
    rows = torch.arange(n, dtype=torch.int64)
    digit = 0
    while (n - 1) >> (4 * digit) or digit == 0:  # each base-16 digit of the row index
        probe = ((rows >> (4 * digit)) & 15).to(torch.int32)[:, None].expand(n, k)
        fields = _fields(pack_int4(probe.contiguous())).to(torch.int64)
        row0 |= fields[at0] << (4 * digit)
        row1 |= fields[at1] << (4 * digit)
        digit += 1
    first, second = torch.full((n,), -1, dtype=torch.int64), torch.full((n,), -1, dtype=torch.int64)
    first[row0], second[row1] = at0, at1
    if (first < 0).any() or (second < 0).any():
        raise RowLayoutError(f"int4 packing of [{n}, {k}] mixes rows")
    step = second - first
    _check(n, k, first, step)
    return first, step


def _check(n: int, k: int, first: torch.Tensor, step: torch.Tensor) -> None:
    """Every value of a random weight read back through (first, step)."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (n, k), dtype=torch.int32, generator=generator)
    packed = pack_int4(q)
    for start in range(0, n, _CHUNK_ROWS):
        ids = torch.arange(start, min(n, start + _CHUNK_ROWS))
        if not torch.equal(gather_rows(packed, first, step, ids, k), q[ids]):
            raise RowLayoutError(
                f"this torch's int4 packing of [{n}, {k}] does not keep rows at a fixed stride"
            )
