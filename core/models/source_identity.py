"""What identifies the model a run measured, beyond the name it was loaded
by: the dtype it was loaded in and a digest of its folder's files.

A run stores both; an export or a served run, rebuilt later from the same
name, compares them with what it loaded, so that a folder changed after the
run, another folder behind the same relative name, or another dtype is
refused instead of handed over under the run's numbers.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

DTYPE_KEY = "source_dtype"
DIGEST_KEY = "source_sha256"
# The files that make a model: weights, configs, tokenizers. A README or a
# licence may change without changing what runs.
_MODEL_FILE_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".data", ".json", ".model",
    ".txt", ".tiktoken", ".jinja",
)  # fmt: skip
_IGNORED_NAMES = {"readme.txt", "license.txt", "notice.txt"}
_CHUNK = 4 * 2**20


def loaded_dtype(loaded) -> str:
    """The dtype of the model's first floating parameter ("" for a graph
    run by ONNX Runtime, whose file digest says it all)."""
    try:
        parameters = loaded.model.parameters()
    except AttributeError:
        return ""
    first = next((p for p in parameters if p.is_floating_point()), None)
    return str(first.dtype).removeprefix("torch.") if first is not None else ""


def _model_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in _MODEL_FILE_SUFFIXES
        and p.name.lower() not in _IGNORED_NAMES
        and not p.name.startswith(".")
        and p.is_file()
    )


def folder_digest(folder: Path | None) -> str:
    """sha256 over the names and bytes of the folder's model files (top
    level), remembered per file size, time and inode so that a search's
    hundred runs read a large model once."""
    if folder is None:
        return ""
    return _digest(str(folder), _stamps(folder))


def _stamps(folder: Path) -> tuple:
    """(name, size, modification time, inode) of each model file."""
    files = _model_files(Path(folder))
    return tuple((p.name, s.st_size, s.st_mtime_ns, s.st_ino) for p in files for s in (p.stat(),))


def folder_stamp(folder: Path | None) -> str:
    """A short hash of the folder's model files' names, sizes and modification
    times: no byte is read, so the window may key a cache by it on its own
    thread (the content digest of a 14 GB model takes seconds). Files saved
    again, even with the same bytes, get a new stamp: the cache is measured anew."""
    if folder is None:
        return ""
    stamps = [stamp[:3] for stamp in _stamps(folder)]  # names, sizes, times: no inode
    return hashlib.sha256(repr(stamps).encode("utf-8", "surrogateescape")).hexdigest()[:20]


@lru_cache(maxsize=64)
def _digest(folder: str, stamps: tuple) -> str:
    digest = hashlib.sha256()
    for name, *_ in stamps:
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        with open(Path(folder) / name, "rb") as handle:  # hashlib frees the GIL on big chunks
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def identity(loaded) -> dict:
    """The run's artifact entries naming the model it measured."""
    return {DTYPE_KEY: loaded_dtype(loaded), DIGEST_KEY: folder_digest(loaded.folder)}


def identity_problem(artifact: dict, loaded, run_id: str) -> str | None:
    """Why ``loaded`` is not the model run ``run_id`` measured, or None.
    Runs stored before these entries existed are taken on their name."""
    measured_dtype = artifact.get(DTYPE_KEY)
    if measured_dtype and measured_dtype != (now := loaded_dtype(loaded)):
        return (
            f"run {run_id} was measured on the model loaded in {measured_dtype}, not {now}: "
            f"load it in {measured_dtype} (the command line's --dtype) to use it"
        )
    measured_digest = artifact.get(DIGEST_KEY)
    if measured_digest and measured_digest != folder_digest(loaded.folder):
        return (
            f"the files of {loaded.source} are not the ones run {run_id} measured (their sha256 "
            "differs: changed since, or another folder by that name); measure it again to "
            "export or serve it"
        )
    return None


def same_files(artifact: dict, digest: str) -> bool:
    """Whether a run was measured on files whose digest is ``digest``: a run
    stored before digests existed, or a model without a folder, is taken on
    its name. Reused runs, baselines and cached scores of a folder changed
    since would be numbers of another model."""
    stored = artifact.get(DIGEST_KEY)
    return not stored or not digest or stored == digest


def canonical_source(text: str) -> str:
    """A model name as a run stores it: a local path made absolute (a
    relative one names another folder once the working directory changes)
    with its links followed (a folder reached through a link is the same
    model, and its runs compare with the others), anything else (the default
    model, a hub id) as given."""
    path = Path(text).expanduser()
    try:
        exists = path.exists()
    except (OSError, ValueError):  # too long, NUL: the loader says why
        return text
    return os.path.realpath(path) if exists else text
