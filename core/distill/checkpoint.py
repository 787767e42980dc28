"""Distillation checkpoints, written atomically. A checkpoint directory
holds one folder per saved step (``step-00000040``) and a ``LATEST`` file
naming the newest. A step folder is written under a temporary name next to
its target and renamed into place; ``LATEST`` is then replaced by a file
rename (atomic on POSIX and Windows); only then are older step folders
removed. A crash or a failed write at any moment leaves ``LATEST`` naming a
complete checkpoint.

A step folder holds:
- ``student.safetensors``: the student's weights (shared tensors, such as
  tied embeddings, stored once);
- ``optimizer.pt``: AdamW's state dict (moments and step counts);
- ``state.json``: the step, training seconds so far, the loss history, the
  settings and the student recipe (so a resume can refuse a mismatch) and
  the teacher's source.
The data order is a function of the seed and the step (``data.py``), and
the learning rate a function of step and seconds (``schedule.py``), so
nothing else is needed to continue exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

STATE = "state.json"
WEIGHTS = "student.safetensors"
OPTIMIZER = "optimizer.pt"
LATEST = "LATEST"
FORMAT = 1
# What a checkpoint directory may hold: step folders, LATEST, and the
# temporary names they are written under. Anything else is the user's.
_OURS = re.compile(r"^(step-\d{8}|LATEST|\.LATEST\.tmp|\.step-\d{8}\..+)$")


@dataclass(frozen=True)
class SavedState:
    step: int
    train_seconds: float
    losses: list[float]
    settings: dict
    recipe: dict
    teacher: str


def check_checkpoint_dir(directory: Path, protected: Path | None = None) -> None:
    """Refuse, before any training, a checkpoint directory this would write
    the user's files into or delete them from: one inside (or holding) the
    source model, a file, a link, or a folder holding anything a checkpoint
    run does not write (old step folders are deleted after each save).
    A new folder, an empty one, or one an earlier run wrote is accepted."""
    from core.atomic_folder import ExportTargetError

    directory = Path(directory).expanduser()
    if protected is not None:
        inner, outer = directory.resolve(), Path(protected).resolve()
        if inner == outer or outer in inner.parents or inner in outer.parents:
            raise ExportTargetError(
                f"{directory} is inside (or contains) the source model folder {protected}; "
                "the source files are never written: choose another checkpoint folder."
            )
    if directory.is_symlink():
        raise ExportTargetError(f"{directory} is a symbolic link; give the folder itself.")
    if not os.path.lexists(directory):
        return
    if not directory.is_dir():
        raise ExportTargetError(f"{directory} exists and is not a folder; choose another one.")
    foreign = sorted(entry.name for entry in directory.iterdir() if not _ours(entry))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ExportTargetError(
            f"{directory} holds files a distillation checkpoint does not write ({shown}); "
            "give a new or empty folder, or one an earlier distillation wrote."
        )


def _ours(entry: Path) -> bool:
    if entry.is_symlink() or not _OURS.match(entry.name):
        return False
    if entry.name.startswith(("step-", ".step-")):  # a step, or a save a kill cut short
        files = (STATE, WEIGHTS, OPTIMIZER)
        return entry.is_dir() and all(child.name in files for child in entry.iterdir())
    return entry.is_file() if entry.name in (LATEST, f".{LATEST}.tmp") else entry.is_dir()


class CheckpointsInUseError(ValueError):
    """Another process is writing checkpoints to the same folder."""


@contextmanager
def writing_checkpoints(directory: Path):
    """Hold ``directory`` for one distillation: a second one writing there
    at the same time deleted the first one's newest step (each save removes
    the older ones) and left LATEST naming nothing, for every later run
    too. The second is refused at once, not made to wait: a run can train
    for hours. The lock file lives in the cache's lock folder (the
    checkpoint folder holds checkpoints only)."""
    from filelock import FileLock, Timeout

    from core.cache_lock import lock_path

    lock = FileLock(str(lock_path(Path(directory))))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise CheckpointsInUseError(
            f"another distillation is writing checkpoints to {directory}: wait for it to "
            "finish, or give this one another checkpoint folder (--checkpoint-dir)"
        ) from None
    try:
        yield
    finally:
        lock.release()


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, or None. A LATEST
    naming a step that is not there (two runs that shared the folder before
    it was locked) falls back to the newest complete step folder."""
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    folder = Path(directory) / pointer.read_text().strip()
    if (folder / STATE).is_file():
        return folder
    complete = sorted(
        p for p in Path(directory).glob("step-*") if _ours(p) and (p / STATE).is_file()
    )
    return complete[-1] if complete else None


def save_checkpoint(directory: Path, model, optimizer, state: SavedState) -> Path:
    """Write step ``state.step`` into ``directory`` atomically; returns its folder."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:08d}"
    target = directory / name
    if target == latest_checkpoint(directory):
        return target  # already saved at this step (a cancel right after a save)
    temp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=directory))
    try:
        save_model(model, str(temp / WEIGHTS))
        torch.save(optimizer.state_dict(), temp / OPTIMIZER)
        data = {"format": FORMAT} | state.__dict__
        (temp / STATE).write_text(json.dumps(data, indent=2))
        _fsync_folder(temp)
        if target.exists():  # left by a run that died before updating LATEST
            shutil.rmtree(target)
        os.replace(temp, target)
        pointer = directory / f".{LATEST}.tmp"
        pointer.write_text(name)
        os.replace(pointer, directory / LATEST)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    for old in [*directory.glob("step-*"), *directory.glob(".step-*")]:
        # older steps, and the temporary folders of saves a kill cut short
        # (the folder is held by one run: writing_checkpoints); never the user's
        if old != target and _ours(old):
            shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(folder: Path, model, optimizer) -> SavedState:
    """Load weights and optimizer state in place; returns the saved state.
    A damaged file (cut short, not JSON, a pickle with code in it, fields of
    another version) is a ValueError naming it: one line, not a traceback."""
    from safetensors.torch import load_model

    folder = Path(folder)
    with _damaged(folder / STATE):
        data = json.loads((folder / STATE).read_text())
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise ValueError("unknown checkpoint format")
        state = SavedState(**data)
    device = str(next(model.parameters()).device)
    try:
        load_model(model, str(folder / WEIGHTS), strict=True, device=device)
    except RuntimeError as err:  # missing, unexpected or differently shaped tensors
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{folder}: the checkpoint does not fit this student ({first})") from err
    except MemoryError:
        raise
    except Exception as err:  # safetensors' own error type on a damaged file
        raise ValueError(f"{folder / WEIGHTS}: damaged ({_reason(err)})") from err
    with _damaged(folder / OPTIMIZER):
        optimizer.load_state_dict(torch.load(folder / OPTIMIZER, weights_only=True))
    return state


@contextmanager
def _damaged(path: Path):
    """Any failure reading ``path`` as one line naming it (torch's unpickler
    would suggest weights_only=False: never, a checkpoint is not trusted code)."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: damaged ({_reason(err)})") from err


def _reason(err: Exception) -> str:
    from core.message_text import first_line

    return f"{type(err).__name__}: {first_line(err)}"


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
