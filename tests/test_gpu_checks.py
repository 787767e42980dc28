"""benchmarks/gpu_checks.py runs once per lent GPU machine, so its pieces
run here on the CPU, at smoke size, to keep it from rotting unseen: the
committed model folder still builds, each item measures through the jobs,
a failure becomes a reported result, and the budget stops and skips items."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_checks.py"


@pytest.fixture(scope="module")
def checks():
    spec = importlib.util.spec_from_file_location("gpu_checks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_checks"] = module  # dataclasses look their module up while defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_checks", None)


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def plan(checks):
    return checks.make_plan("cpu", smoke=True, budget_s=60, threads=1)


@pytest.fixture(scope="module")
def model_dir(checks, plan, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu-checks") / "model"
    return checks.build_random_model(checks.MODEL_CONFIG_DIR, folder, plan.seed, smoke=True)


def test_the_committed_folder_builds_the_default_architecture(checks, model_dir):
    from transformers import AutoConfig

    shipped = AutoConfig.from_pretrained(checks.MODEL_CONFIG_DIR)
    assert (shipped.model_type, shipped.num_hidden_layers, shipped.hidden_size) == (
        "llama",
        30,
        576,
    )
    built = AutoConfig.from_pretrained(model_dir)
    assert built.num_hidden_layers == checks.SMOKE_CONFIG["num_hidden_layers"]
    assert built.vocab_size == shipped.vocab_size  # the real tokenizer's vocabulary


def test_eager_row_is_the_bench_jobs_measurement(checks, plan, model_dir):
    tokens_by_dtype = {}
    row = checks.eager_row(plan, model_dir, "float32", tokens_by_dtype)
    assert row["runs"] == plan.min_repeats
    assert 0 < row["decode_ms_per_token_p10"] <= row["decode_ms_per_token"]
    assert row["decode_ms_per_token"] <= row["decode_ms_per_token_p90"]
    assert row["peak_mib"] > 0 and row["dtype"] == "float32"
    assert len(tokens_by_dtype["float32"]) == plan.new_tokens
    assert "ms/token" in row["summary"]


def test_fidelity_rows_compare_the_models_asked_for(checks, plan, model_dir):
    same = checks.dtype_fidelity_row(plan, model_dir, ("cpu", "float32"), ("cpu", "float32"))
    assert same["top1_agreement"] == 1.0 and same["mean_kl"] == pytest.approx(0, abs=1e-9)
    assert same["tokens"] == plan.windows * plan.window_tokens
    half = checks.dtype_fidelity_row(plan, model_dir, ("cpu", "float32"), ("cpu", "bfloat16"))
    assert half["mean_kl"] > 0  # bf16 rounding shows


def test_recipe_rows_build_as_a_run_and_measure(checks, plan, model_dir):
    by_name = dict(checks.recipes(plan))
    row = checks.recipe_row(plan, model_dir, by_name["int8 weight-only"])
    assert row["speed"]["decode_ms_per_token"] > 0
    assert 0 < row["fidelity"]["top1_agreement"] <= 1
    assert "build_error" not in row and "speed_error" not in row
    # The fallback (built on the CPU, moved to the device) on a CPU device.
    fallback = checks.cpu_built_row(plan, model_dir, by_name["int8 weight-only"], "bfloat16")
    assert fallback["speed"]["decode_ms_per_token"] > 0
    dropped = checks.recipe_row(plan, model_dir, by_name["drop 1 layers"])
    assert "dropped layers" in dropped["notes"][0]


def test_family_row_compares_greedy_tokens(checks, plan, tmp_path):
    row = checks.family_row(plan, "llama", tmp_path)
    assert row["equal"] is True and row["prompt_max_abs_logit_diff"] == 0.0
    assert len(row["cpu_tokens"]) == plan.family_tokens
    assert checks.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert checks.first_difference([1, 2], [1, 2]) is None


def test_a_failing_item_is_reported_and_the_next_still_runs(checks, plan):
    report = checks.Report(plan, checks.Budget(60), None)

    def broken():
        raise NotImplementedError("no CUDA kernel for _weight_int4pack_mm_for_cpu\nmore")

    failed = report.item("recipes", "int4", broken)
    assert failed["error"].startswith("NotImplementedError: no CUDA kernel for")
    assert "more" not in failed["error"]
    fine = report.item("recipes", "next", lambda: {"summary": "ran"})
    assert fine["summary"] == "ran"
    assert set(report.data["sections"]["recipes"]) == {"int4", "next"}


def test_the_budget_stops_an_item_and_skips_the_rest(checks, plan):
    report = checks.Report(plan, checks.Budget(0.5), None)
    start = time.perf_counter()
    stopped = report.item("compiled", "bf16", lambda: time.sleep(5) or {})
    assert time.perf_counter() - start < 4.5  # stopped before the 5 s item ends (3 flaked busy)
    assert "budget ran out" in stopped["error"]
    skipped = report.item("compiled", "fp16", lambda: {"summary": "never"})
    assert "skipped" in skipped and len(report.data["skipped"]) == 1


def test_main_prints_json_last_and_writes_it_to_out(checks, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    argv = ["--device", "cpu", "--smoke", "--threads", "1", "--sections", "env,eager"]
    assert checks.main(argv) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "out" / "gpu_checks.json").read_text())
    assert last["label"] == saved["label"] == checks.LABEL
    assert set(last["sections"]["eager"]) == {"bf16", "fp16", "fp32"}
    assert saved["sections"]["eager"]["fp32"]["greedy_tokens"]  # the file keeps details
    assert "greedy_tokens" not in last["sections"]["eager"]["fp32"]
    assert last["skipped"] == [] and "recipes" not in last["sections"]
