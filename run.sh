#!/usr/bin/env bash
# Sets everything up (first time only) and opens the workbench with the
# embedded default model loaded. Extra arguments go to `workbench`
# (e.g. ./run.sh info --json runs headless).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
if [ $# -eq 0 ] && [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "${QT_QPA_PLATFORM:-}" != "offscreen" ]; then
  echo "No display found (DISPLAY and WAYLAND_DISPLAY are unset). Run under a desktop session," >&2
  echo "or headless: xvfb-run ./run.sh, or ./run.sh bench --json for the command line." >&2
  exit 1
fi
exec .venv/bin/workbench "$@"
