"""Append one JSON line to a store, whole or not at all.

A write cut short (a full disk, a kill) left half a line; the next record
was appended to it, and both were lost to every reader. So a store that
does not end in a newline gets one first, and a write that fails is cut
back to where it started.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def append_json_line(path: Path, data: dict) -> None:
    """Write ``data`` as one line at the end of ``path`` (made if missing);
    an OSError (permission, full disk) leaves the file as it was."""
    line = (json.dumps(data) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        start = f.seek(0, os.SEEK_END)
        if start:
            f.seek(start - 1)
            if f.read(1) != b"\n":  # the end of a line cut short earlier
                line = b"\n" + line
        try:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            f.truncate(start)
            raise


def check_appendable(path: Path) -> None:
    """Raise OSError now if ``path`` cannot be appended to (a folder that is
    not writable, a file in its place), before any work is done for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab"):
        pass
