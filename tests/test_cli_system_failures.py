"""What the system refuses reaches the CLI user as one line: a recipe that
is a FIFO (it blocked forever), a data folder that cannot be written (the
run was measured, then lost in a traceback), SIGTERM mid-export (it left a
half-written folder), a NaN perplexity over several windows (a traceback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.test_cli import run_cli
from tests.tiny_models import save_nan_copy


def _one_line_refusal(out) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error:")
    return last


def test_a_recipe_that_is_a_fifo_is_refused_not_waited_on(tiny_llama_dir, tmp_path):
    fifo = tmp_path / "recipe.json"
    os.mkfifo(fifo)
    out = run_cli("compress", "-m", str(tiny_llama_dir), "--recipe", str(fifo), timeout=60)
    assert "is not a file" in _one_line_refusal(out)


def test_a_data_folder_that_cannot_be_written_is_refused_before_the_run(tiny_llama_dir, tmp_path):
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data folder should be")
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(blocked)}
    started = time.perf_counter()
    out = run_cli(
        "compress", "-m", str(tiny_llama_dir), "--pass", "int8_weight_only", "--no-eval",
        env=env,
    )  # fmt: skip
    assert str(blocked) in _one_line_refusal(out)
    assert "Benchmarking" not in out.stderr  # refused before any work
    assert time.perf_counter() - started < 60


def test_sigterm_during_an_export_leaves_no_half_written_folder(tiny_llama_dir, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"format": 1, "passes": [{"pass": "int8_weight_only", "version": 1}]}')
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    command = [
        sys.executable, "-m", "app.launcher", "export", "-m", str(tiny_llama_dir),
        "--recipe", str(recipe), "--out", str(out_dir / "e"), "--format", "hf,report,gguf",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(out_dir.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the half-written folder appears
    assert process.poll() is None, "the export ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_eval_of_a_nan_model_over_several_windows_says_broken(tiny_llama_dir, tmp_path):
    folder = save_nan_copy(tiny_llama_dir, tmp_path / "nan-model")
    out = run_cli("eval", "-m", str(folder), "--windows", "3", "--context-tokens", "32")
    assert out.returncode == 0, out.stderr
    assert "BROKEN: perplexity is not a number" in out.stdout


def test_sensitivity_of_a_nan_model_says_broken_not_xnan(tiny_llama_dir, tmp_path):
    folder = save_nan_copy(tiny_llama_dir, tmp_path / "nan-model")
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    out = run_cli("sensitivity", "-m", str(folder), "--windows", "1", env=env)
    assert out.returncode == 0, out.stderr
    assert "xnan" not in out.stdout and "not a number (NaN)" in out.stdout
    assert "BROKEN: 2 of 2 cells are not numbers" in out.stdout
