"""One size unit in the whole window: MB, 10^6 bytes (the export's and the
report's unit). Tables, charts, the model panel, the estimate and the
notifications all write sizes through here, so none shows MiB beside MB."""

from __future__ import annotations

MB = 1e6
UNIT = "MB"


def megabytes(n: int | float | None) -> float | None:
    return None if n is None else n / MB


def mb_number(n: int | float) -> str:
    """The number of MB, without the unit: one decimal, more below 1 MB
    (a tiny model's 0.03 MB should not read as 0.0)."""
    value = n / MB
    if 0 < abs(value) < 0.001:  # "1e-06" for a bool tensor's byte reads as a typo
        return "<0.001"
    return f"{value:,.1f}" if abs(value) >= 1 or value == 0 else f"{value:.2g}"


def size_text(n: int | float | None) -> str:
    return "n/a" if n is None else f"{mb_number(n)} {UNIT}"
