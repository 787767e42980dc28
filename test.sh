#!/usr/bin/env bash
# Sets everything up (first time only) and runs the whole test suite,
# including the tests on the real default model. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
export QT_QPA_PLATFORM=offscreen
scripts/setup.sh
.venv/bin/python -m ruff check core app tests benchmarks
.venv/bin/python -m ruff format --check core app tests benchmarks
# Two worker processes on this 2-core machine (pytest-xdist; more where there
# are more cores, at most 4): the suite is mostly one busy thread at a time,
# so two halve its wall time. Whole files go to one worker, so a module's
# fixtures are built once. `./test.sh -n 0` runs in this process. The 30
# slowest tests are listed at the end: CI must stay well under 30 minutes.
exec .venv/bin/python -m pytest -n auto --maxprocesses 4 --dist loadfile --durations=30 "$@"
