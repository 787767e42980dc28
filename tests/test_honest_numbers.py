"""Numbers that hold what their names say: block-linear bytes, speedups
against both baselines, perplexity interval ends in the record."""

import dataclasses
import json
import os
import sys

import pytest
import torch

from benchmarks import compression_table as table
from core.models.linear_layers import block_linears
from core.models.loading import load_model
from core.passes import REGISTRY
from core.passes.recipe import Recipe, apply_recipe
from core.runtime.runners import COMPILED_RUNNER, TORCH_RUNNER


def test_block_linear_bytes_count_exactly_the_converted_layers(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    layers = block_linears(loaded.model)
    weights = sum(linear.weight.numel() for _, linear in layers)
    outputs = sum(linear.out_features for _, linear in layers)
    assert table.block_linear_bytes(loaded.model) == 4 * weights  # fp32, norms left out
    int8 = apply_recipe(loaded, Recipe((REGISTRY["int8_weight_only"](),))).loaded.model
    assert table.block_linear_bytes(int8) == weights + 2 * outputs  # int8 + bf16 scales
    int4 = apply_recipe(loaded, Recipe((REGISTRY["int4_weight_only"](32, "rtn"),))).loaded.model
    assert table.block_linear_bytes(int4) < weights  # packed: half a byte a weight, plus scales


def test_speedups_separate_runtime_from_compression():
    ms = {
        (table.BASELINE, TORCH_RUNNER): 56.0,
        (table.BASELINE, COMPILED_RUNNER): 42.0,
        ("w8a8", TORCH_RUNNER): 35.0,
        ("w8a8", COMPILED_RUNNER): 18.0,
        ("no_compile", TORCH_RUNNER): 28.0,
    }
    s = table.speedups(ms, "w8a8")
    assert s["speedup_vs_eager_fp32"] == pytest.approx(56 / 35)
    assert s["speedup_compiled_vs_eager_fp32"] == pytest.approx(56 / 18)
    assert s["speedup_compiled_vs_compiled_fp32"] == pytest.approx(42 / 18)
    # total = runtime gain x compression gain
    assert s["speedup_compiled_vs_eager_fp32"] == pytest.approx(
        (56 / 42) * s["speedup_compiled_vs_compiled_fp32"]
    )
    assert table.speedups(ms, "no_compile") == {"speedup_vs_eager_fp32": 2.0}
    row = {
        "recipe": "no_compile", "bytes": 2e8, "block_linear_bytes": 1e8, "prefill_ms": 90.0,
        "decode_ms_per_token": 28.0, "ppl": 23.5, "ppl_delta_pct": 1.2, "top1_agreement": 0.93,
        **table.speedups(ms, "no_compile"),
    }  # fmt: skip
    line = table.table_line(row)
    assert len(line) == len(table.HEADER) and line.split()[5:9] == ["2.00", "-", "-", "-"]


def test_record_keeps_both_ends_of_the_asymmetric_interval(tiny_llama_dir, tmp_path, capsys):
    from core.cli.record_text import print_record
    from core.jobs.experiment import run_experiment
    from core.results.store import ResultsStore
    from tests.test_health import TINY

    original = load_model(str(tiny_llama_dir), device="cpu")
    record = list(run_experiment(original, Recipe(), TINY))[-1]
    m = record.metrics
    low, high = m.ppl_ci95_low, m.ppl_ci95_high
    assert low < m.ppl < high
    assert m.ppl_ci95 == pytest.approx((high - low) / 2)  # the half-width, as documented
    assert high - m.ppl > m.ppl - low  # exp() of a symmetric NLL interval
    print_record(record)
    assert f"(95% CI {low:.3f} to {high:.3f})" in capsys.readouterr().out
    store = ResultsStore(tmp_path / "runs.jsonl")
    old = record.to_dict()
    # a line written before the ends were kept
    del old["metrics"]["ppl_ci95_low"], old["metrics"]["ppl_ci95_high"]
    store.path.write_text(json.dumps(old) + "\n")
    (loaded,) = store.load()
    assert loaded.metrics.ppl_ci95 == m.ppl_ci95 and loaded.metrics.ppl_ci95_low is None


def test_report_gives_speed_against_eager_and_against_the_same_runtime():
    from core.export.report import build_report, render_html
    from tests.test_health import _record

    w8a8 = Recipe((REGISTRY["int8_dynamic"](),))
    runs = [
        _record(run_id="eager", decode_ms_per_token=56.0),
        _record(run_id="compiled", backend="torch-compile", decode_ms_per_token=42.0),
        _record(
            run_id="w8a8",
            backend="torch-compile",
            recipe=w8a8.to_dict(),
            recipe_name="W8A8 [PyTorch compiled]",
            decode_ms_per_token=18.0,
        ),
    ]
    report = build_report("m", w8a8, runs, "w8a8", {}, ("report",), {})
    assert report["runtime_original_run"]["run_id"] == "compiled"
    row = next(r for r in report["comparison"] if r["metric"] == "decode_ms_per_token")
    assert row["ratio"] == pytest.approx(18 / 56)
    assert row["ratio_same_runtime"] == pytest.approx(18 / 42)
    page = render_html(report)
    assert "<td>0.321×, no spread recorded</td><td>0.429×, no spread recorded</td>" in page
    assert "ratio, same runtime" in page
    # No original measured on that runtime: the column says so rather than guess.
    alone = build_report("m", w8a8, [runs[0], runs[2]], "w8a8", {}, ("report",), {})
    row = next(r for r in alone["comparison"] if r["metric"] == "decode_ms_per_token")
    assert row["ratio_same_runtime"] is None and alone["runtime_original_run"] is None


def test_distillation_recovery_is_measured_in_log_perplexity():
    from benchmarks.distill_recovery import recovered_fraction

    # The recorded run (benchmarks/results/distill_recovery_cpu_2core.txt).
    assert recovered_fraction(23.2575, 90.4047, 36.1144) == pytest.approx(0.676, abs=5e-4)
    assert recovered_fraction(20.0, 80.0, 20.0) == pytest.approx(1.0)
    assert recovered_fraction(20.0, 80.0, 80.0) == pytest.approx(0.0)
    assert recovered_fraction(20.0, 80.0, 40.0) == pytest.approx(0.5)  # half the nats
    assert recovered_fraction(20.0, 20.0, 25.0) is None


class _FakeValue:
    def __init__(self, length: int) -> None:
        self.length = length

    def shape(self):
        return (1, 2, self.length, 16)


class _CudaSession:
    """What OrtCausalLM reads of a session that got the CUDA provider."""

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _ort_on_cuda(vocab: int):
    """An OrtCausalLM whose session runs under CUDA; its step returns fixed
    logits on the CPU (as the real one does), so the benchmark runs anywhere."""
    from core.runtime.onnx.ort_model import OrtCausalLM, StepOutput

    model = OrtCausalLM.__new__(OrtCausalLM)
    model.session, model.int8, model.static_int8 = _CudaSession(), False, False
    model.weight_only = model.fused = False
    model.empty_cache = lambda capacity=None: [_FakeValue(0)]

    def step(ids, past, positions):
        logits = torch.zeros(1, len(positions), vocab)
        logits[..., 7] = 1.0
        return StepOutput(logits, [_FakeValue(past[0].length + ids.shape[1])])

    model.step = step
    return model


def test_onnx_runtime_on_cuda_is_labelled_cuda_and_its_memory_not_measured(tiny_llama_dir, capsys):
    import dataclasses
    from types import SimpleNamespace

    from core.cli.bench import _print_bench
    from core.measure.speed import BenchSettings, run_benchmark, timing_device

    loaded = load_model(str(tiny_llama_dir), device="cpu")
    model = _ort_on_cuda(loaded.model.config.vocab_size)
    assert model.device.type == "cuda" and model.runner_name == "onnxruntime-cuda-fp32"
    on_cuda = dataclasses.replace(loaded, model=model)
    assert on_cuda.device.type == "cpu"  # where its logits come back: not where it runs
    assert timing_device(on_cuda).type == "cuda"
    settings = BenchSettings(prompt_tokens=8, new_tokens=3, warmup=0, min_repeats=1, min_time_s=0)
    result = run_benchmark(on_cuda, settings)
    assert result.environment.device == "cuda"
    assert result.environment.runner == "onnxruntime-cuda-fp32"
    assert result.peak_memory_bytes is None and result.peak_memory_kind.startswith("not measured")
    _print_bench(SimpleNamespace(json=False), on_cuda, result, "")
    out = capsys.readouterr().out
    assert " on cuda (" in out and "  memory   not measured (not measured: ONNX Runtime" in out
    # The same on the CPU provider: the process's RSS is ONNX Runtime's memory too.
    cpu = run_benchmark(loaded, settings)
    assert cpu.environment.device == "cpu" and cpu.peak_memory_bytes > 0


def test_generate_on_the_compiled_runner_times_generation_only(tiny_llama_dir, capsys):
    from core.cli.main import main

    argv = ["generate", "--model", str(tiny_llama_dir), "--device", "cpu", "--threads", "1"]
    assert main([*argv, "--backend", "torch-compile", "-n", "8", "--json", "-p", "def"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert "Compiling the decode step" in out.err
    assert summary["new_tokens"] == 8 and summary["compile_s"] > 0
    generating_s = (summary["prefill_ms"] + 7 * summary["decode_ms_per_token"]) / 1e3
    # Compiling takes seconds, a tiny model's token milliseconds: had the
    # compile been timed, the first decode step alone would exceed it.
    assert generating_s < summary["compile_s"] / 2
    assert summary["tokens_per_s"] == pytest.approx(1e3 / summary["decode_ms_per_token"])
    # Eager generation has no compile step.
    assert main([*argv, "-n", "4", "--json", "-p", "def"]) == 0
    assert json.loads(capsys.readouterr().out)["compile_s"] is None


def test_niceness_benchmark_helpers_and_one_tiny_round(tiny_llama_dir, capsys):
    from app.worker import JOB_NICENESS
    from benchmarks import niceness_under_load as bench

    assert bench.JOB_NICENESS == JOB_NICENESS  # the window's value, copied to avoid Qt
    assert bench.condition("nice10_loaded") == (10, True)
    assert bench.condition("nice0_quiet") == (0, False)
    assert bench.rotated(1) == ["nice10_quiet", "nice0_loaded", "nice10_loaded", "nice0_quiet"]
    summary = bench.summarise(
        {"nice0_quiet": [10, 12], "nice10_quiet": [11], "nice0_loaded": [20], "nice10_loaded": [60]}
    )
    assert summary["nice_ratio_quiet"] == pytest.approx(1.0)  # medians: 11 / 11
    assert summary["nice_ratio_loaded"] == 3.0 and summary["load_slowdown_nice10"] == 5.455
    tiny = ["--model", str(tiny_llama_dir), "--rounds", "1", "--threads", "1"]
    bench.main([*tiny, "--prompt-tokens", "8", "--new-tokens", "3"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(result["rounds"]) == set(bench.CONDITIONS)
    assert all(len(v) == 1 and v[0] > 0 for v in result["rounds"].values())
    if sys.platform.startswith("linux"):  # the thread really ran at the job's niceness
        assert result["niceness_applied"]["nice10_loaded"] == bench.JOB_NICENESS
        assert result["niceness_applied"]["nice0_quiet"] == os.getpriority(os.PRIO_PROCESS, 0)


def test_a_runs_top1_and_kl_cover_every_window_its_protocol_names(tiny_llama_dir):
    """The protocol line names the perplexity windows; top-1 and KL were
    measured on only the first 4 of them (a sweep found it)."""
    from core.evaluate.fidelity import FidelityPartial
    from core.evaluate.perplexity import PerplexityPartial
    from core.jobs.experiment import run_experiment
    from tests.test_health import TINY

    windows = dataclasses.replace(TINY.perplexity, quick_windows=6)
    six = dataclasses.replace(TINY, perplexity=windows)
    original = load_model(str(tiny_llama_dir), device="cpu")
    recipe = Recipe((REGISTRY["prune_mlp"](0.25),))
    events = list(run_experiment(original, recipe, six))
    ppl_windows = {e.windows_total for e in events if isinstance(e, PerplexityPartial)}
    fidelity = [e for e in events if isinstance(e, FidelityPartial)]
    assert ppl_windows == {6} and {e.windows_total for e in fidelity} == {6}
    assert len(fidelity) == 6
