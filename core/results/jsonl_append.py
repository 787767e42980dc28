"""Append one JSON line to a store, whole or not at all.

A write cut short (a full disk, a kill) left half a line; the next record
was appended to it, and both were lost to every reader. So a store that
does not end in a newline gets one first, and a write that fails is cut
back to where it started.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.strict_json import strict_dumps


def append_json_line(path: Path, data: dict) -> None:
    """Write ``data`` as one line of strict JSON (a NaN as null) at the end of
    ``path`` (made if missing); an OSError (permission, full disk, not a
    regular file) leaves the file as it was."""
    line = (strict_dumps(data) + "\n").encode("utf-8")
    require_regular_file(path)
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
    require_regular_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with open(path, "ab"):
            pass
        return
    # not made yet: a refused job must not leave an empty store behind, so the
    # folder is tried with a scratch file of our own, removed at once
    import tempfile

    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
        pass


def require_regular_file(path: Path) -> None:
    """OSError if ``path`` exists and is not a regular file: a folder cannot be
    read as lines, and opening a FIFO would block until someone wrote to it."""
    if path.exists() and not path.is_file():
        raise OSError(f"cannot use {path}: it is not a regular file")
