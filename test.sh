#!/usr/bin/env bash
# Sets everything up (first time only) and runs the whole test suite,
# including the tests on the real default model. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
export QT_QPA_PLATFORM=offscreen
scripts/setup.sh
.venv/bin/python -m ruff check core app tests benchmarks
.venv/bin/python -m ruff format --check core app tests benchmarks
exec .venv/bin/python -m pytest "$@"
