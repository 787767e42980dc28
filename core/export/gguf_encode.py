"""One tensor into one GGUF type. Matrices take the chosen type; vectors
(norms, biases) stay F32, as llama.cpp's converter keeps them. Rounding is
the ``gguf`` package's own (its Q8_0 is bit-exact with ggml's reference).

Where the configuration already holds the values on a grid of the chosen
type, they are taken as they are rather than rounded again: our int8
per-row weights are Q8_0 blocks that share their row's scale, and our int4
weights (groups of 32, 64, 128 or 256 columns, a scale and a minimum each)
are Q4_1 blocks that share their group's. Only the scales (and minimums) go
from our bf16/float32 to GGUF's F16, which is exact when they fit its
precision and otherwise moves a weight by at most a few F16 rounding steps,
far less than rounding it onto a new grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
from gguf.quants import quantize

from core.errors import ExportFailedError
from core.export.gguf_weights import Int4Grid, Int8Grid, SourceWeight

Q = GGMLQuantizationType
# The --gguf-type names, the GGUF type of the matrices, general.file_type.
TYPES = {
    "f16": (Q.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (Q.Q4_0, LlamaFileType.MOSTLY_Q4_0),
    "q4_1": (Q.Q4_1, LlamaFileType.MOSTLY_Q4_1),
}
DEFAULT_TYPE = "q8_0"
# The token embedding and the output head stay 8-bit beside 4-bit blocks:
# llama.cpp's own quantizer keeps them at 6 bits or more for Q4 files, and on
# the default model (tied) a Q4_1 embedding took top-1 agreement to 82%.
WIDE = ("token_embd.weight", "output.weight")


def tensor_type(gguf_type: str, name: str) -> GGMLQuantizationType:
    qtype = TYPES[gguf_type][0]
    return Q.Q8_0 if name in WIDE and qtype in (Q.Q4_0, Q.Q4_1) else qtype


F16_MAX = float(np.finfo(np.float16).max)

KEPT = "kept"  # the configuration's own grid values, scales in F16
ROUNDED = "rounded"  # onto the type's grid by the gguf package
CAST = "cast"  # float to float (F32/F16/BF16)


@dataclass(frozen=True)
class Encoded:
    data: np.ndarray  # what GGUFWriter.add_tensor takes (uint8 blocks for quantized types)
    qtype: GGMLQuantizationType
    how: str  # KEPT, ROUNDED or CAST
    note: str = ""  # why a matrix did not get the chosen type


def check_type(name: str) -> str:
    if name not in TYPES:
        raise ValueError(f"unknown GGUF type {name!r}; known: {', '.join(TYPES)}")
    return name


def _f16(values: np.ndarray) -> np.ndarray | None:
    """``values`` in F16 bytes, or None when some do not fit F16's range."""
    if np.abs(values).max(initial=0) > F16_MAX:
        return None
    return values.astype(np.float16)


def _int8_as_q8_0(grid: Int8Grid) -> np.ndarray | None:
    rows, cols = grid.q.shape
    blocks = cols // 32
    scale = grid.scale.numpy()
    scale = np.where((grid.q == 0).all(dim=1).numpy(), 0, scale)  # an all-zero row needs no scale
    d = _f16(scale)
    if d is None:
        return None
    d = np.ascontiguousarray(np.broadcast_to(d[:, None, None], (rows, blocks, 1))).view(np.uint8)
    qs = grid.q.numpy().reshape(rows, blocks, 32).view(np.uint8)
    return np.concatenate([d, qs], axis=-1).reshape(rows, blocks * 34)


def _int4_as_q4_1(grid: Int4Grid) -> np.ndarray | None:
    if grid.group % 32:
        return None
    rows, cols = grid.q.shape
    blocks = cols // 32
    group_of_block = np.arange(blocks) * 32 // grid.group
    d = _f16(grid.scale.numpy()[:, group_of_block])
    m = _f16(grid.minimum.numpy()[:, group_of_block])
    if d is None or m is None:
        return None
    q = grid.q.numpy().reshape(rows, blocks, 2, 16)
    qs = q[:, :, 0, :] | (q[:, :, 1, :] << np.uint8(4))  # ggml: low nibbles first half
    parts = [d[..., None].view(np.uint8), m[..., None].view(np.uint8), qs.astype(np.uint8)]
    return np.concatenate(parts, axis=-1).reshape(rows, blocks * 20)


def _kept(weight: SourceWeight, qtype: GGMLQuantizationType) -> np.ndarray | None:
    if isinstance(weight.grid, Int8Grid) and qtype == Q.Q8_0:
        return _int8_as_q8_0(weight.grid)
    if isinstance(weight.grid, Int4Grid) and qtype == Q.Q4_1:
        return _int4_as_q4_1(weight.grid)
    return None


def encode(name: str, weight: SourceWeight, qtype: GGMLQuantizationType) -> Encoded:
    values = np.ascontiguousarray(weight.dense.numpy(), dtype=np.float32)
    if values.ndim < 2:
        return Encoded(values, Q.F32, CAST)
    block = GGML_QUANT_SIZES[qtype][0]
    note = ""
    if values.shape[-1] % block:  # llama.cpp's converter falls back the same way
        note = f"rows of {values.shape[-1]} values are not whole blocks of {block}"
        qtype = Q.F16
    if qtype == Q.F16:
        f16 = _f16(values)
        if f16 is None:
            raise ExportFailedError(
                f"GGUF export: {name} has values beyond F16's range (±{F16_MAX:g}); "
                "export as bf16 or q8_0"
            )
        return Encoded(f16, Q.F16, CAST, note)
    if qtype == Q.BF16:
        return Encoded(quantize(values, Q.BF16), Q.BF16, CAST)
    kept = _kept(weight, qtype)
    if kept is not None:
        return Encoded(kept, qtype, KEPT)
    return Encoded(quantize(values, qtype), qtype, ROUNDED, note)
