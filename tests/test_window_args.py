"""The window's own options are checked like the CLI's: one line, exit 2,
before Qt or a model loads (--threads -3 failed the load, 4096 hung it)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("value", "says"),
    [("0", "must be between 1"), ("-3", "must be between 1"), ("4096", "must be at most"),
     ("two", "must be a whole number")],
)  # fmt: skip
def test_a_bad_thread_count_is_refused_before_the_window_opens(value, says):
    out = subprocess.run(
        [sys.executable, "-m", "app.launcher", "--threads", value],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: argument --threads: ")
    assert says in lines[0]
