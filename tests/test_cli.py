"""The CLI through a real subprocess, as a user runs it."""

import json
import subprocess
import sys

import pytest


def run_cli(*args, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, "-m", "app.launcher", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_info_json(tiny_gpt2_dir):
    out = run_cli("info", "--model", str(tiny_gpt2_dir), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["architecture"] == "GPT2LMHeadModel"
    assert data["layers"] == 2 and data["parameters"] > 0
    # n_inner None is 4x the hidden size (it printed "MLP None"); the bytes
    # by dtype are words, not a Python dict
    assert data["intermediate_size"] == 4 * data["hidden_size"]
    text = run_cli("info", "--model", str(tiny_gpt2_dir)).stdout
    assert f"MLP {4 * data['hidden_size']}," in text and "{'float32'" not in text


def test_generate_streams_and_reports_speed(tiny_llama_dir):
    out = run_cli("generate", "-m", str(tiny_llama_dir), "-p", "class", "-n", "12", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["new_tokens"] == 12 and summary["tokens_per_s"] > 0


def test_bench_json(tiny_gpt2_dir):
    out = run_cli(
        "bench",
        "-m",
        str(tiny_gpt2_dir),
        "--json",
        "--prompt-tokens",
        "16",
        "--new-tokens",
        "8",
        "--min-repeats",
        "2",
        "--min-time",
        "0",
        "--threads",
        "1",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("prefill_ms", "decode_ms_per_token", "tokens_per_s", "peak_memory_bytes"):
        assert data[key] > 0
    assert data["environment"]["threads"] == 1
    assert data["environment"]["runner"] == "torch-eager"
    assert data["runs"] == 2


def test_bench_on_the_compiled_runner(tiny_llama_dir):
    out = run_cli(
        "bench", "-m", str(tiny_llama_dir), "--json", "--backend", "torch-compile",
        "--prompt-tokens", "16", "--new-tokens", "8", "--min-repeats", "2", "--min-time", "0",
        "--warmup", "0",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["environment"]["runner"] == "torch-compile"
    # Compiled before the protocol: even with no warm-up no run times the
    # compile (seconds a step). A tiny model decodes in a few ms; the bound is
    # loose enough for a loaded machine (100 ms failed under a sweep's load).
    assert data["decode_ms_per_token_p90"] < 1000


@pytest.mark.parametrize("command", ["info", "generate", "bench", "eval"])
def test_bad_path_exits_nonzero_with_one_line(command, tmp_path):
    out = run_cli(command, "--model", str(tmp_path / "missing" / "model"))
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: No such folder")


def test_not_a_model_folder(tmp_path):
    out = run_cli("info", "--model", str(tmp_path))
    assert out.returncode == 2 and "config.json" in out.stderr


@pytest.mark.parametrize("command", ["info", "generate", "bench", "eval"])
def test_help(command):
    out = run_cli(command, "--help")
    assert out.returncode == 0 and "--model" in out.stdout


def test_core_import_pulls_no_qt_and_no_heavy_libraries():
    code = (
        "import sys, core, core.cli.main, core.jobs, core.errors;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'pyqtgraph', 'app', 'torch', 'onnxruntime', 'transformers')];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_whole_core_imports_without_qt():
    """Every core module imported, then: no Qt anywhere in sys.modules."""
    code = (
        "import pkgutil, importlib, sys, core;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(core.__path__, 'core.')];"
        "print([m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'app')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_compress_prints_a_run_record(tiny_llama_dir):
    out = run_cli(
        "compress",
        "-m",
        str(tiny_llama_dir),
        "--pass",
        "int4_weight_only:group_size=32",
        "--no-eval",
        "--json",
        "--threads",
        "1",
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["recipe"]["passes"][0] == {
        "pass": "int4_weight_only",
        "version": 2,  # version 2 added the awq and act-order methods
        "group_size": 32,
        "method": "rtn",
    }
    assert record["metrics"]["decode_ms_per_token"] > 0 and record["metrics"]["ppl"] is None
    from core.models.loading import load_model
    from core.models.size import measure_size

    original = measure_size(load_model(str(tiny_llama_dir)).model)
    assert record["bytes"] < original.total_bytes
    assert record["bytes_by_component"]["mlp"] < original.by_component["mlp"] / 4


def test_compress_refuses_a_bad_recipe_before_loading(tmp_path):
    out = run_cli(
        "compress",
        "-m",
        str(tmp_path / "never-loaded"),
        "--pass",
        "int8_weight_only",
        "--pass",
        "int4_weight_only",
    )
    assert out.returncode == 2
    assert "two quantizations" in out.stderr


def test_a_stage_is_printed_once_however_many_fractions_it_reports(capsys):
    """ "[Compressing]" came once per layer (sweep ten)."""
    from core.cli.common import progress
    from core.progress import Progress

    progress(Progress("Loading", None))  # whatever an earlier test printed last
    capsys.readouterr()
    for done in range(5):
        progress(Progress("Compressing", done / 5))
    progress(Progress("Benchmarking", None))
    progress(Progress("Compressing", 0.5))  # a later stage of the same name is new again
    assert capsys.readouterr().err.splitlines() == [
        "[Compressing]",
        "[Benchmarking]",
        "[Compressing]",
    ]
