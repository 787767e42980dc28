#!/usr/bin/env bash
# Builds the desktop bundle, dist/workbench/ (PyInstaller, one folder), then
# smoke-tests it (packaging/smoke.sh). One command from a fresh clone:
#   packaging/build.sh
# It builds from .venv: made by scripts/setup.sh when missing, with the
# `packaging` extra (PyInstaller) added when absent. VENV=/path/to/venv builds
# from another environment holding the workbench's packages and PyInstaller
# (nothing is installed into it). SMOKE=0 skips the smoke test.
# Needs ~6 GB free disk (work files in build/, the bundle in dist/).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[bundle] %s\n' "$*" >&2; }

venv=${VENV:-.venv}
if [ -z "${VENV:-}" ] && [ ! -x .venv/bin/python ]; then
  say "no .venv here: running scripts/setup.sh first"
  scripts/setup.sh
fi
python="$venv/bin/python"
[ -x "$python" ] || { say "$python is missing (VENV=$venv)"; exit 1; }
if ! "$python" -c 'import PyInstaller' 2>/dev/null; then
  if [ -n "${VENV:-}" ]; then
    say "PyInstaller is not installed in $venv: pip install 'pyinstaller>=6.22,<6.23' there"
    exit 1
  fi
  say "installing the packaging extra (PyInstaller) into .venv"
  "$python" -m pip install -q --disable-pip-version-check -e ".[packaging]"
fi

mkdir -p build
log=build/bundle-build.log
say "building dist/workbench with PyInstaller (10-30 minutes; log: $log)"
start=$(date +%s)
if ! nice -n 10 "$python" -m PyInstaller --noconfirm --distpath dist \
  --workpath build/pyinstaller packaging/workbench.spec >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  say "PyInstaller failed; the whole log is $log"
  exit 1
fi
say "built in $(($(date +%s) - start)) s: $(du -sh dist/workbench | cut -f1) in dist/workbench"

if [ "${SMOKE:-1}" != 0 ]; then
  packaging/smoke.sh dist/workbench "$python"
fi
say "start it with dist/workbench/workbench (the window) or dist/workbench/workbench info (the CLI)"
