"""Append one JSON line to a store, whole or not at all.

A write cut short (a full disk, a kill) left half a line; the next record
was appended to it, and both were lost to every reader. So a store that
does not end in a newline gets one first, and a write that fails is cut
back to where it started.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from core.strict_json import strict_dumps


def append_json_line(path: Path, data: dict) -> None:
    """Write ``data`` as one line of strict JSON (a NaN as null) at the end of
    ``path`` (made if missing); an OSError (permission, full disk, not a
    regular file) leaves the file as it was."""
    line = (strict_dumps(data) + "\n").encode("utf-8")
    require_regular_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # unbuffered: a failed flush kept the line in the buffer, and closing the
    # file wrote it after the truncation (a failure reported, the line kept)
    with open(path, "a+b", buffering=0) as f, _one_writer(f):
        start = f.seek(0, os.SEEK_END)
        if start:
            f.seek(start - 1)
            if f.read(1) != b"\n":  # the end of a line cut short earlier
                line = b"\n" + line
        try:
            rest = memoryview(line)
            while rest:
                rest = rest[f.write(rest) :]
            os.fsync(f.fileno())
        except OSError:
            f.truncate(start)
            raise


@contextmanager
def _one_writer(f):
    """An exclusive lock on the open store while a line is appended: two
    writers on a full disk each cut the file back to where their own line
    began, and one cut past the other's end filled the gap with NUL bytes.
    (flock: POSIX; elsewhere lines are appended unlocked, as before.)"""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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
