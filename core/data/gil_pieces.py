"""Big conversions done in pieces, so no single call holds the GIL for long.

A C call that converts a whole Python list to a tensor, or decodes a whole
file's bytes to text, holds the GIL from start to end: 25-30 ms for the
dev split's token stream or the news archive (measured in a search's job
thread). The window's GUI thread needs the GIL for every paint, so a job's
long call is a frozen window however idle the cores are. Between pieces the
interpreter hands the GIL over (the worker's switch interval, app/worker.py).
"""

from __future__ import annotations

import codecs

PIECE = 1 << 16  # list items or bytes per call: well under a millisecond each


def long_tensor(ids: list[int]):
    """``torch.tensor(ids, dtype=torch.long)``, a piece at a time."""
    import torch

    if len(ids) <= PIECE:
        return torch.tensor(ids, dtype=torch.long)
    pieces = [torch.tensor(ids[i : i + PIECE], dtype=torch.long) for i in range(0, len(ids), PIECE)]
    return torch.cat(pieces)


def utf8_text(data: bytes) -> str:
    """``data.decode("utf-8")``, a piece at a time (a character split between
    pieces is kept by the incremental decoder)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    parts = [decoder.decode(view[i : i + PIECE]) for i in range(0, len(data), PIECE)]
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)
