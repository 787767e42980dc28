"""The check after writing: read the GGUF back with the ``gguf`` package's
reader, dequantise every tensor, undo llama.cpp's q/k row order and compare
with the configuration's weights element by element, against the error each
GGUF type allows:

- F32: none. F16 / BF16: half a step of that float format.
- A block type rounded by the gguf package: half a grid step of the block
  (Q4_0: a whole step, as its top value is clipped), plus what storing the
  block's scale (and minimum) in F16 can add.
- The configuration's own int8/int4 values kept: only what storing their
  scale (and minimum) in F16 can add; 0 where those fit F16.

A tensor outside its bound fails the export (the writer removes the file).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from core.errors import ExportFailedError
from core.export.gguf_encode import KEPT
from core.export.gguf_read import read_gguf

Q = GGMLQuantizationType
F32_SLACK = 2.0**-22  # a few float32 rounding steps of the arithmetic itself


def f16_rounding(values: np.ndarray) -> np.ndarray:
    """At most half an F16 step at ``values`` (normal and subnormal range)."""
    return np.maximum(np.abs(values) * 2.0**-11, 2.0**-25)


@dataclass(frozen=True)
class TensorCheck:
    name: str
    hf_name: str
    type: str
    how: str
    max_abs_error: float
    # max over blocks of error / (half the block's grid step): <= 1 is on the grid
    max_over_half_step: float | None
    within_bound: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _block_fields(raw: np.ndarray, qtype: GGMLQuantizationType):
    """(d, m or None) per block, each [rows, blocks], as float32."""
    rows = raw.shape[0]
    size = GGML_QUANT_SIZES[qtype][1]
    blocks = raw.reshape(rows, -1, size)
    d = np.ascontiguousarray(blocks[..., 0:2]).view(np.float16)[..., 0].astype(np.float32)
    m = None
    if qtype == Q.Q4_1:
        m = np.ascontiguousarray(blocks[..., 2:4]).view(np.float16)[..., 0].astype(np.float32)
    return d, m


def _float_bound(qtype, readback: np.ndarray) -> np.ndarray:
    """Per element: half a step of the float format, plus arithmetic slack."""
    slack = F32_SLACK * np.abs(readback)
    if qtype == Q.F16:
        return f16_rounding(readback) + slack
    if qtype == Q.BF16:
        return np.abs(readback) * 2.0**-8 + 1e-38 + slack
    return slack  # F32


def _block_bound(raw, qtype, how: str):
    """(bound, half grid step), per block."""
    d, m = _block_fields(raw, qtype)
    top = {Q.Q8_0: 127, Q.Q4_0: 8, Q.Q4_1: 15}[qtype]
    bound = top * f16_rounding(d)  # the scale's F16 rounding, times the largest value
    if m is not None:
        bound = bound + f16_rounding(m)
    half_step = np.abs(d) / 2
    if how != KEPT:
        bound = bound + (2 * half_step if qtype == Q.Q4_0 else half_step)
    return bound, half_step


def _compare(raw, qtype, how: str, readback: np.ndarray, values: np.ndarray):
    """(max |error|, max error in half grid steps or None, within bound)."""
    error = np.abs(readback - values)
    if qtype in (Q.F32, Q.F16, Q.BF16):
        within = bool((error <= _float_bound(qtype, readback)).all())
        return float(error.max(initial=0)), None, within
    rows, size = readback.shape[0], GGML_QUANT_SIZES[qtype][0]
    worst = error.reshape(rows, -1, size).max(axis=-1)  # per block
    largest = np.abs(readback).reshape(rows, -1, size).max(axis=-1)
    bound, half_step = _block_bound(raw, qtype, how)
    within = bool((worst <= bound + F32_SLACK * largest).all())
    with np.errstate(divide="ignore", invalid="ignore"):
        over = np.where(half_step > 0, worst / half_step, np.where(worst > 0, np.inf, 0))
    return float(worst.max(initial=0)), float(over.max(initial=0)), within


def check_gguf(path: Path, expected: dict[str, tuple[str, str, np.ndarray, np.ndarray | None]]):
    """Compare every tensor with ``expected``: GGUF name -> (transformers name,
    how it was encoded, the configuration's values, the row order written or
    None). Returns a TensorCheck per tensor; raises ExportFailedError when one
    is outside its bound or missing."""
    reader = read_gguf(path)
    found = {t.name: t for t in reader.tensors}
    if set(found) != set(expected):
        missing = sorted(set(expected) ^ set(found))
        raise ExportFailedError(f"GGUF check: tensors missing or unexpected: {missing[:5]}")
    checks = []
    for name, (hf_name, how, values, order) in expected.items():
        tensor = found[name]
        raw = np.asarray(tensor.data)
        readback = dequantize(raw, tensor.tensor_type).reshape(values.shape)
        if order is not None:  # undo llama.cpp's q/k row order
            readback = readback[np.argsort(order)]
            raw = raw[np.argsort(order)]
        error, ratio, within = _compare(raw, tensor.tensor_type, how, readback, values)
        checks.append(
            TensorCheck(name, hf_name, tensor.tensor_type.name, how, error, ratio, within)
        )
    del reader  # releases the file's memory map
    failed = [c for c in checks if not c.within_bound]
    if failed:
        worst = ", ".join(
            f"{c.name} ({c.type}, max |error| {c.max_abs_error:.3g})" for c in failed[:3]
        )
        raise ExportFailedError(
            f"the GGUF read back does not match the configuration's weights within its "
            f"types' error bounds: {worst}{' ...' if len(failed) > 3 else ''}; nothing was kept"
        )
    return checks
