#!/usr/bin/env bash
# Smoke test of a built bundle (packaging/build.sh runs it; alone:
#   packaging/smoke.sh [dist/workbench] [python]).
# The bundled program runs with an empty environment and an empty home: its
# own caches, settings and run store, no PYTHONPATH, no virtual environment,
# so it converts the default model from the GGUF inside the bundle. `python`
# (default .venv/bin/python) only parses what the bundle printed and saves a
# tiny random model for the ONNX step. Leaves the window's screenshot and the
# outputs in build/bundle-smoke/. About 5 minutes on 2 idle cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=$(cd "${1:-dist/workbench}" && pwd)
python=${2:-.venv/bin/python}
exe="$bundle/workbench"
out="$(pwd)/build/bundle-smoke"
rm -rf "$out" && mkdir -p "$out"
home=$(mktemp -d "${TMPDIR:-/tmp}/workbench-smoke-XXXXXX")
trap 'rm -rf "$home"' EXIT
say() { printf '[smoke] %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

run() {
  (cd "$home" && env -i PATH=/usr/bin:/bin HOME="$home" LANG=C.UTF-8 \
    XDG_CONFIG_HOME="$home/config" XDG_CACHE_HOME="$home/cache" XDG_DATA_HOME="$home/data" \
    WORKBENCH_CACHE_DIR="$home/workbench-cache" WORKBENCH_DATA_DIR="$home/workbench-data" \
    HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" \
    "$exe" "$@")
}

[ -x "$exe" ] || fail "$exe is not there: build it with packaging/build.sh"

say "the data files are in the bundle"
"$python" - "$bundle" <<'EOF' || fail "a data file is missing from the bundle"
import runpy, sys
from pathlib import Path
internal = Path(sys.argv[1]) / "_internal"
data = runpy.run_path("packaging/bundle_data.py")["DATA"]
missing = [f"{p}/{r}" for p, r in data if not (internal / p / r).exists()]
if missing:
    sys.exit(f"missing: {', '.join(missing)}")
EOF

say "workbench info --json on the default model (first start: converts the bundled GGUF)"
run info --json >"$out/info.json" 2>"$out/info.stderr" || {
  tail -5 "$out/info.stderr" >&2
  fail "info --json"
}
"$python" - "$out/info.json" "$home/workbench-cache" "$bundle" <<'EOF' || fail "info --json printed something else"
import json, sys
from pathlib import Path
info = json.loads(Path(sys.argv[1]).read_text())
assert info["architecture"] == "LlamaForCausalLM", info["architecture"]
assert info["layers"] == 30 and info["vocab_size"] == 49152, info
assert 130e6 < info["parameters"] < 140e6, info["parameters"]
marker = Path(sys.argv[2]) / "models/SmolLM2-135M-Instruct/workbench-conversion.json"
source = json.loads(marker.read_text())["source"]
# Converted from the GGUF inside the bundle, not from an installed package.
assert Path(source).resolve().is_relative_to(Path(sys.argv[3]).resolve()), source
print(f"[smoke] {info['architecture']}, {info['parameters']:,} parameters, "
      f"{info['layers']} layers; converted from {source}", file=sys.stderr)
EOF

say "workbench eval on one window of the bundled news texts"
run eval --windows 1 --context-tokens 64 --stride 32 --json >"$out/eval.json" 2>"$out/eval.stderr" || {
  tail -5 "$out/eval.stderr" >&2
  fail "eval"
}
"$python" - "$out/eval.json" <<'EOF' || fail "eval printed no perplexity"
import json, math, sys
from pathlib import Path
ppl = json.loads(Path(sys.argv[1]).read_text())["perplexity"]["ppl"]
assert math.isfinite(ppl) and 1 < ppl < 1000, ppl
print(f"[smoke] perplexity {ppl:.2f} on one news window (32 tokens scored)", file=sys.stderr)
EOF

say "ONNX Runtime in the bundle: export a tiny random Llama to ONNX and time it"
"$python" -c 'import sys; from pathlib import Path; from tests.tiny_models import save_tiny_model
save_tiny_model("llama", Path(sys.argv[1]))' "$home/tiny-llama" 2>"$out/tiny.stderr"
run bench -m "$home/tiny-llama" --backend ort --prompt-tokens 8 --new-tokens 4 --min-repeats 1 \
  --min-time 0 --warmup 0 --json >"$out/ort.json" 2>"$out/ort.stderr" || {
  tail -5 "$out/ort.stderr" >&2
  fail "bench --backend ort"
}
"$python" - "$out/ort.json" <<'EOF' || fail "bench --backend ort printed no ONNX Runtime timing"
import json, sys
from pathlib import Path
bench = json.loads(Path(sys.argv[1]).read_text())
runner = bench["environment"]["runner"]
assert runner.startswith("onnxruntime") and bench["decode_ms_per_token"] > 0, bench
print(f"[smoke] {runner}: {bench['decode_ms_per_token']:.1f} ms/token on the tiny model", file=sys.stderr)
EOF

say "the compiled runner is refused in one line (torch.compile needs a compiler and headers)"
status=0
run bench --backend torch-compile --new-tokens 2 >/dev/null 2>"$out/compiled.stderr" || status=$?
[ "$status" = 2 ] && tail -n 1 "$out/compiled.stderr" | grep -q "not available in the desktop bundle" ||
  fail "bench --backend torch-compile: status $status, $(tail -n 1 "$out/compiled.stderr")"

say "the window opens offscreen, loads the default model and saves a screenshot"
run --screenshot "$out/window.png" >"$out/window.stdout" 2>"$out/window.stderr" || {
  tail -5 "$out/window.stderr" >&2
  fail "the window"
}
"$python" - "$out/window.png" <<'EOF' || fail "the screenshot is not a picture of the window"
import struct, sys
from pathlib import Path
data = Path(sys.argv[1]).read_bytes()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
width, height = struct.unpack(">II", data[16:24])
# A blank or tiny window compresses to a few kilobytes; the drawn one does not.
assert width >= 800 and height >= 500 and len(data) > 30_000, (width, height, len(data))
print(f"[smoke] screenshot {width}x{height}, {len(data) // 1024} KiB", file=sys.stderr)
EOF

say "passed; the screenshot is $out/window.png"
