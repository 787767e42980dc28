"""A prompt must be text: a string holding lone surrogates (bytes that were
not UTF-8 on the command line, which Python keeps as surrogate escapes, or a
JSON "\\ud800") cannot be encoded, and the tokenizer fails on it with a
TypeError deep inside."""

from __future__ import annotations


def text_problem(text: str) -> str | None:
    """One line saying why ``text`` is not text a tokenizer can take, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return (
            f"the prompt is not valid text: character {err.start} is not a Unicode character "
            "(bytes that are not UTF-8, or a lone surrogate)"
        )
    return None
