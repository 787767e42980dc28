"""Model output made safe to print on a terminal: control characters other
than newline and tab (NUL, ESC's colour and cursor sequences, C1 codes) are
written as escapes like ``\\x1b``, so a model's text cannot move the cursor,
clear the screen or retitle the window (a sweep saw NUL bytes from a tiny
Gemma 3 reach the terminal). ``--json`` keeps the exact text."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
