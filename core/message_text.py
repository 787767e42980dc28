"""User input inside a one-line message: escaped and cut, so a value holding
newlines, control characters or a megabyte of text still makes one short line."""

from __future__ import annotations

from typing import Any


def shown(value: Any, limit: int = 40) -> str:
    """``value`` as repr (newlines and odd characters escaped), cut to ``limit``."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return f"a {value.bit_length()}-bit integer"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    """``text`` with every non-printable character (newline, tab, ESC) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
