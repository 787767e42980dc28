"""Writes that fail (a full disk, a kill mid-line) lose nothing already
stored and leave nothing half-written; what is delivered is readable as any
file the user makes (a fourth adversarial sweep found each of these)."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from core.atomic_folder import ExportTargetError, atomic_folder
from core.results.jsonl_append import append_json_line, check_appendable


def test_a_line_cut_short_earlier_does_not_swallow_the_next(tmp_path):
    store = tmp_path / "runs.jsonl"
    store.write_text('{"run": 1}\n{"run": 2, "cut')  # a full disk stopped this line
    append_json_line(store, {"run": 3})
    text = store.read_text().splitlines()
    assert json.loads(text[0]) == {"run": 1} and json.loads(text[-1]) == {"run": 3}


def test_a_failed_append_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    store = tmp_path / "runs.jsonl"
    store.write_text('{"run": 1}\n')
    before = store.read_bytes()

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        append_json_line(store, {"run": 2})
    assert store.read_bytes() == before


def test_checking_a_store_that_is_not_there_leaves_nothing_behind(tmp_path):
    # a refused job checked its store first: it left an empty sensitivity.jsonl
    store = tmp_path / "data" / "sensitivity.jsonl"
    check_appendable(store)
    assert list(store.parent.iterdir()) == []
    store.write_text('{"a": 1}\n')
    check_appendable(store)
    assert store.read_text() == '{"a": 1}\n'
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the store's folder should be")
    with pytest.raises(OSError):
        check_appendable(blocked / "runs.jsonl")


def test_a_write_that_fails_inside_an_export_is_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "export"
    with pytest.raises(ExportTargetError, match="No space left on device") as failed:
        with atomic_folder(target) as staging:
            (staging / "part").write_text("half")
            # safetensors and tokenizers raise their own types, quoting the system
            raise RuntimeError("Error while serializing: I/O error: No space left on device")
    assert "\n" not in str(failed.value)
    assert list(tmp_path.iterdir()) == []


def test_other_failures_inside_an_export_keep_their_own_type(tmp_path):
    with pytest.raises(KeyError):
        with atomic_folder(tmp_path / "export"):
            raise KeyError("a bug, not a write")
    assert list(tmp_path.iterdir()) == []


def test_an_export_is_readable_as_the_umask_says(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_folder(tmp_path / "export") as staging:
            (staging / "model.safetensors").write_bytes(b"x")
            os.chmod(staging / "model.safetensors", 0o600)  # as some writers leave it
    finally:
        os.umask(previous)
    folder = tmp_path / "export"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == 0o644


WRITER = """
import sys
from pathlib import Path
from core.atomic_folder import atomic_folder
target = Path(sys.argv[1])
for i in range(int(sys.argv[2])):
    with atomic_folder(target, overwrite=True) as temp:
        (temp / "who").write_text(sys.argv[3] + str(i))
"""


def test_exports_replacing_one_folder_at_once_leave_no_hidden_copies(tmp_path):
    # three processes overwriting one target: 20 hidden ".T.old-*" copies of old
    # exports were left, each failure with a wrong message (sweep 13)
    import subprocess
    import sys

    target = tmp_path / "T"
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(tmp_path / "cache")}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), "60", name],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in "abc"
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    assert [p.name for p in tmp_path.iterdir()] == ["T"]  # no lock file left beside it either
    assert (target / "who").read_text()[0] in "abc"
