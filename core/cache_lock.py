"""One process at a time builds a cache entry (the converted default model,
an exported graph, the demo classifier).

Two workbench processes (the window and a CLI run, or two test workers)
asking for the same missing entry would both build it, and the second to
finish would replace the first one's folder while it may already be read.
The entry's lock file (in ``<cache>/locks``, not beside the entry: a cache
folder holds entries only) makes the second wait and then find the entry
built. ``filelock`` (what huggingface_hub uses for
its own cache) rather than fcntl: it also works on Windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.progress import CancelToken, Progress, ProgressSink, ignore_progress

LOCKS = "locks"  # the folder of lock files, in the cache root
POLL_S = 0.5  # how often a waiting process looks at its cancel token


def lock_path(entry: Path) -> Path:
    """The lock file of ``entry``: named by its full path, so entries of the
    same name in different folders do not share a lock."""
    import hashlib

    from core.models.default_model import cache_root

    folder = cache_root() / LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(str(entry.resolve()).encode()).hexdigest()[:16]
    return folder / f"{entry.name}-{digest}.lock"


@contextmanager
def building(
    entry: Path,
    cancel: CancelToken | None = None,
    progress: ProgressSink = ignore_progress,
) -> Iterator[None]:
    """Hold ``entry``'s lock while the block runs; waits (cancellable) while
    another process holds it. The caller checks again, inside the block,
    whether the entry is there now."""
    from filelock import FileLock, Timeout

    entry = Path(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)  # where the entry will be built
    lock = FileLock(str(lock_path(entry)))
    said = False
    while True:
        try:
            lock.acquire(timeout=POLL_S)
            break
        except Timeout:
            if cancel is not None:
                cancel.raise_if_cancelled()
            if not said:
                progress(Progress(f"Waiting for another workbench process building {entry.name}"))
                said = True
    try:
        yield
    finally:
        lock.release()
