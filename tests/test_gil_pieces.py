"""Conversions in pieces give exactly what the one-call versions give."""

import torch

from core.data.gil_pieces import PIECE, long_tensor, utf8_text


def test_long_tensor_equals_one_call_across_piece_boundaries():
    for n in (0, 5, PIECE, PIECE + 1, 3 * PIECE + 7):
        ids = [(i * 7919) % 50000 for i in range(n)]
        got = long_tensor(ids)
        assert got.dtype == torch.long and torch.equal(got, torch.tensor(ids, dtype=torch.long))


def test_utf8_text_keeps_characters_split_between_pieces():
    # multi-byte characters placed so that some straddle every piece boundary
    text = ("é€𝄞a" * (PIECE // 3)) + "\r\nend"
    data = text.encode("utf-8")
    assert len(data) > 2 * PIECE
    assert utf8_text(data) == data.decode("utf-8")
