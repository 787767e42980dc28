"""Two processes asking for the same missing cache entry: one builds it, the
other waits and finds it built (core/cache_lock.py)."""

import multiprocessing
import threading
import time

import pytest

from core.cache_lock import building
from core.errors import Cancelled
from core.progress import CancelToken


def build_once(entry: str, log: str) -> None:
    """What a cache does: check, lock, check again, build (slowly) if missing."""
    from pathlib import Path

    entry = Path(entry)
    with building(entry):
        if (entry / "done").is_file():
            return
        with open(log, "a") as f:
            f.write("built\n")
        entry.mkdir()
        time.sleep(1.0)  # the other process arrives while this one builds
        (entry / "done").write_text("ok")


def test_the_second_process_waits_and_finds_the_entry_built(tmp_path):
    entry, log = tmp_path / "entry", tmp_path / "log"
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=build_once, args=(str(entry), str(log))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert log.read_text() == "built\n"  # exactly one build
    assert (entry / "done").read_text() == "ok"


def hold(entry: str, ready, release) -> None:
    with building(entry):
        ready.set()
        release.wait(30)


def test_a_waiting_process_can_be_cancelled_and_says_why_it_waits(tmp_path):
    entry = tmp_path / "entry"
    spawn = multiprocessing.get_context("spawn")
    ready, release = spawn.Event(), spawn.Event()
    holder = spawn.Process(target=hold, args=(str(entry), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        cancel, said = CancelToken(), []
        threading.Timer(1.0, cancel.cancel).start()
        start = time.monotonic()
        with pytest.raises(Cancelled):
            with building(entry, cancel, said.append):
                pass
        assert time.monotonic() - start < 5
        assert "Waiting for another workbench process" in said[0].stage
    finally:
        release.set()
        holder.join(30)
    with building(entry):  # released: taken at once
        pass
