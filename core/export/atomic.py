"""Write a folder all at once or not at all.

Everything is built in a hidden temporary folder next to the target (same
file system, so the final step is a rename, which is atomic), then renamed
into place. Any exception, a cancel included, removes the temporary folder:
nothing half-written remains. An existing target is refused unless
``overwrite`` is given; then the old folder is renamed aside, the new one
renamed in, and only then the old one deleted (if the second rename fails,
the old one is put back). A target inside a protected folder (the user's
source model) is refused: the user's files are never written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import WorkbenchError


class ExportTargetError(WorkbenchError):
    """The export target cannot be written as asked."""


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_target(target: Path, overwrite: bool, protected: tuple[Path, ...] = ()) -> Path:
    """Refuse a target that would write into a protected folder or replace
    an existing one without ``overwrite``; returns the resolved target."""
    target = Path(target).expanduser()
    for folder in protected:
        if folder is not None and (_inside(target, folder) or _inside(folder, target)):
            raise ExportTargetError(
                f"{target} is inside (or contains) the source model folder {folder}; "
                "the source files are never written: choose another folder."
            )
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise ExportTargetError(f"{target} already exists; use overwrite to replace it.")
        if not target.is_dir():
            raise ExportTargetError(f"{target} exists and is not a folder; remove it first.")
    if not target.parent.is_dir():
        raise ExportTargetError(f"{target.parent} does not exist; create it first.")
    return target.resolve()


@contextmanager
def atomic_folder(
    target: Path, overwrite: bool = False, protected: tuple[Path, ...] = ()
) -> Iterator[Path]:
    """Yield an empty temporary folder; on a clean exit it becomes ``target``."""
    target = check_target(target, overwrite, protected)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield temp
        _move_into_place(temp, target, overwrite)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _move_into_place(temp: Path, target: Path, overwrite: bool) -> None:
    if not target.exists():
        os.rename(temp, target)  # fails if a folder appeared meanwhile: never merged
        return
    if not overwrite:  # created by someone else while we were writing
        raise ExportTargetError(f"{target} appeared while exporting; nothing was replaced.")
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(aside)
    os.rename(target, aside)
    try:
        os.rename(temp, target)
    except BaseException:
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
