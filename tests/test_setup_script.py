"""scripts/setup.sh's check for Qt's system libraries, run as the script
has it: on a machine that has them it must never decide they are missing
(it then runs apt-get, or as a normal user stops with "install them")."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"


def library_check() -> str:
    """The script's system-library section, verbatim."""
    text = SETUP.read_text()
    start = text.index("# --- system libraries")
    return text[start : text.index("# --- Python", start)]


def test_the_library_check_is_stable_where_the_libraries_are_present():
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    if "libEGL.so.1" not in cache:
        pytest.fail("this machine lacks Qt's libraries: run scripts/setup.sh first")
    # apt-get and a root user stubbed away: a wrong "missing" exits 1 saying so.
    script = (
        'set -euo pipefail\nsay() { echo "$*" >&2; }\nid() { echo 1000; }\n'
        "apt-get() { echo APT-GET >&2; return 1; }\n" + library_check() + "echo present\n"
    )
    for _ in range(30):  # the old pipe failed about one run in eight
        result = subprocess.run(
            [shutil.which("bash"), "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},  # the libraries CI installs
        )
        assert result.returncode == 0 and result.stdout.strip() == "present", result.stderr
