"""Write a folder all at once or not at all.

Everything is built in a hidden temporary folder next to the target (same
file system, so the final step is a rename, which is atomic), then renamed
into place. Any exception, a cancel included, removes the temporary folder:
nothing half-written remains. An existing target is refused unless
``overwrite`` is given and the caller's ``replaceable`` check accepts it
(exports replace only their own folders: core/export/marker.py); then the old
folder is renamed aside, the new one renamed in, and only then the old one
deleted (if the second rename fails, the old one is put back). A symbolic
link as target is always refused: neither the link nor what it points to is
replaced. A target inside a protected folder (the user's source model) is
refused: the user's files are never written. A parent that is missing or
cannot be written is refused before any work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import WorkbenchError

# The staging folder's name: ".<target>.partial-<random>", beside the target.
PARTIAL = ".partial-"


class ExportTargetError(WorkbenchError):
    """The export target cannot be written as asked."""


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_target(
    target: Path,
    overwrite: bool,
    protected: tuple[Path, ...] = (),
    replaceable: Callable[[Path], None] | None = None,
) -> Path:
    """Refuse a target that would write into a protected folder, whose parent
    cannot be written, or that exists and may not be replaced (``overwrite``
    off, a link, not a folder, or ``replaceable`` raises). Returns the target
    with its parent resolved; the last component is never followed."""
    target = Path(target).expanduser()
    if target.name in ("", ".", ".."):
        raise ExportTargetError(f"{target}: give the export folder by its own name.")
    for folder in protected:
        if folder is not None and (_inside(target, folder) or _inside(folder, target)):
            raise ExportTargetError(
                f"{target} is inside (or contains) the source model folder {folder}; "
                "the source files are never written: choose another folder."
            )
    parent = target.parent
    if not parent.is_dir():
        state = "is not a folder" if parent.exists() else "does not exist; create it first"
        raise ExportTargetError(f"cannot export to {target}: {parent} {state}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportTargetError(f"cannot export to {target}: {parent} is not writable.")
    _check_existing(target, overwrite, replaceable)
    return parent.resolve() / target.name


def _check_existing(
    target: Path, overwrite: bool, replaceable: Callable[[Path], None] | None
) -> None:
    if not os.path.lexists(target):
        return
    if target.is_symlink():
        raise ExportTargetError(
            f"{target} is a symbolic link; a link and what it points to are never replaced: "
            "choose another folder."
        )
    # What overwrite could not replace is refused first, so that the advice
    # to overwrite is only given where it works (a file, or a folder the
    # workbench did not make, was advised to be overwritten, then refused).
    if not target.is_dir():
        if not os.path.lexists(target):  # gone meanwhile (another export moving it aside)
            return
        raise ExportTargetError(
            f"{target} is a file, not a folder; a file is never replaced: choose another folder."
        )
    if replaceable is not None:
        replaceable(target)
    if not overwrite:
        raise ExportTargetError(
            f"{target} already exists; choose another folder, or overwrite to replace it."
        )


@contextmanager
def atomic_folder(
    target: Path,
    overwrite: bool = False,
    protected: tuple[Path, ...] = (),
    replaceable: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield an empty temporary folder; on a clean exit it becomes ``target``."""
    target = check_target(target, overwrite, protected, replaceable)
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL}", dir=target.parent))
    except OSError as err:  # permission, read-only or full file system
        raise ExportTargetError(f"cannot write into {target.parent}: {err.strerror}") from err
    try:
        yield temp
        _readable_as_the_umask_says(temp)
        with _one_mover(target):
            _move_into_place(temp, target, overwrite, replaceable)
    except BaseException as err:
        shutil.rmtree(temp, ignore_errors=True)
        reason = _write_failure(err)
        if reason:  # one line, not the writer's traceback (safetensors, tokenizers, gguf)
            raise ExportTargetError(
                f"writing {target} failed ({reason}); nothing was left there"
            ) from err
        raise


def _write_failure(err: BaseException) -> str:
    """The reason when ``err`` is a failed write (a full disk, no permission),
    whichever library raised it; "" for anything else. safetensors and
    tokenizers raise their own types, quoting the system's words."""
    if isinstance(err, ExportTargetError):
        return ""
    if isinstance(err, OSError) and not isinstance(err, FileExistsError):
        return err.strerror or str(err) or type(err).__name__
    text = str(err)
    for words in ("No space left on device", "Disk quota exceeded", "Permission denied"):
        if words in text:
            return words
    return ""


def _readable_as_the_umask_says(folder: Path) -> None:
    """mkdtemp makes 0700 and some writers 0600; what is delivered gets the
    modes any file the user makes gets (0777 / 0666 less the umask)."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


@contextmanager
def _one_mover(target: Path) -> Iterator[None]:
    """One workbench process at a time swaps ``target``: two exports replacing
    the same folder at once each renamed the other's folder aside, and one
    left a hidden copy of an old export behind with a wrong message."""
    # The lock is the parent folder's own (flock on the folder: no lock file
    # is left beside the user's export); a move takes milliseconds, so one
    # mover per folder costs nothing. Not POSIX: as before, unlocked.
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _move_into_place(
    temp: Path, target: Path, overwrite: bool, replaceable: Callable[[Path], None] | None
) -> None:
    if not os.path.lexists(target):
        try:  # fails if a non-empty folder appeared meanwhile: never merged
            os.rename(temp, target)
        except OSError as err:
            if not os.path.lexists(target):
                raise
            raise ExportTargetError(
                f"{target} appeared while exporting; nothing was replaced."
            ) from err
        return
    if not overwrite:  # created by someone else while we were writing
        raise ExportTargetError(f"{target} appeared while exporting; nothing was replaced.")
    _check_existing(target, overwrite, replaceable)  # again: it may have changed meanwhile
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(aside)
    os.rename(target, aside)
    try:
        os.rename(temp, target)
    except BaseException:
        if os.path.lexists(target):  # put there meanwhile by a process not holding the lock
            shutil.rmtree(aside, onerror=_writable_then_retry)  # the old export: replaced
            raise ExportTargetError(
                f"another process replaced {target} while this export was moved in; "
                "its folder is there, not this one"
            ) from None
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, onerror=_writable_then_retry)


def _umask() -> int:
    """The process's umask, read where Linux shows it: setting it to learn it
    (``os.umask``) would change it for a moment for every thread, and the
    window writes files from worker threads."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way to read it
    os.umask(mask)
    return mask


def _writable_then_retry(function, path, _info) -> None:
    """The replaced export (ours: checked above) may have been made read-only;
    its folders are made writable so it is removed, not left hidden."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
        function(path)
    except OSError:
        pass  # left as it is: the new export is in place either way
