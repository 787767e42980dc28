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


def first_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message as one short line: its first line (libraries'
    later lines are advice or a stack), escaped, cut to ``limit``; the
    exception's type where it has no message."""
    text = str(err).strip() or type(err).__name__
    return one_line(text.splitlines()[0][:limit])


def counted(count: int, noun: str) -> str:
    """ "1 request", "2 requests" (nouns that take an s)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
