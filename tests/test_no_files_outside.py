"""ONNX Runtime writes nothing outside the workbench's folders (its telemetry
store in ~/.cache/Microsoft, found by an adversarial sweep): a run on an
ONNX backend in a fresh home leaves that home empty of ONNX Runtime files."""

from __future__ import annotations

import os

from tests.test_cli import run_cli


def test_an_onnx_run_leaves_no_onnx_runtime_files_in_the_home(tiny_llama_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")
    }
    env |= {"HOME": str(home), "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    env |= {"WORKBENCH_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = run_cli("eval", "-m", str(tiny_llama_dir), "--backend", "ort", "--windows", "1", env=env)
    assert out.returncode == 0, out.stderr
    assert not (home / ".cache" / "Microsoft").exists()
