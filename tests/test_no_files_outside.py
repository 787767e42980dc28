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


def test_an_export_writes_nothing_in_the_home_or_the_temp_folder(tiny_llama_dir, tmp_path):
    """matplotlib (the report's charts) kept its font cache in ~/.config and
    ~/.cache, and torch.export left $TMPDIR/torchinductor_<user>: both live in
    the workbench's cache now."""
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        '{"format": 1, "passes": [{"pass": "prune_unstructured", "sparsity": 0.2, "version": 1}]}'
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")
    }
    env |= {"HOME": str(home), "TMPDIR": str(temp), "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    env |= {"WORKBENCH_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = run_cli(
        "export", "-m", str(tiny_llama_dir), "--recipe", str(recipe),
        "--out", str(tmp_path / "out"), "--format", "report,onnx", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert list(home.iterdir()) == [] and list(temp.iterdir()) == []
    assert (tmp_path / "out").is_dir()
