"""The fastest decode this workbench has on this machine, side by side with
fp32 PyTorch eager, each configuration against its floor.

Candidates (``--only`` picks some): fp32 in PyTorch eager (the baseline) and
in ONNX Runtime; weight-only int8 and int4 graphs (ONNX Runtime MatMulNBits,
``ort-w8`` / ``ort-w4``); dynamic int8 (``ort-int8``); and the fastest PyTorch
path of the passes issue, int4 g128 GPTQ blocks with an int8 head, compiled.
Each is built once (through core.jobs: the same build and runtime preparation
a Run does), then timed in interleaved rounds (core.measure.interleave: the
order rotates every round, so drift hits all alike), then scored on the
report split (quick perplexity protocol).

For each: decode ms/token (median over rounds, p10-p90), the weight bytes a
decode step reads (core.measure.decode_floor), the floor = those bytes over
the memory bandwidth measured in this run, the ratio to the floor, the
speedup over fp32 eager, and the perplexity change. Two quality classes: the
int8 class (perplexity within +1% of fp32) and the int4 class (int4 weights,
its perplexity change stated).

    .venv/bin/python benchmarks/engine_speed.py [--threads N|auto] [--rounds 5] [--only NAME ...]

Last line: one JSON object with ``fp32_eager_ms``, ``int8_best_ms``,
``int8_ppl_delta_pct``, ``best_ms_per_token``, ``best_recipe``,
``best_ppl_delta_pct``, ``floor_ms`` (the best's floor) and every row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity
from core.jobs.experiment import ExperimentSettings, build_compressed
from core.jobs.on_runtime import prepare
from core.measure.decode_floor import bytes_read_per_token, memory_bandwidth_bytes_per_s
from core.measure.interleave import interleaved_rounds
from core.measure.speed import BenchSettings
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe
from core.runtime.device import set_threads

INT8_CLASS_MAX_PPL_DELTA_PCT = 1.0
# One run per configuration per round: prompt 64, 32 decode steps.
ROUND = BenchSettings(prompt_tokens=64, new_tokens=32, warmup=0, min_repeats=1, min_time_s=0)


@dataclass(frozen=True)
class Candidate:
    recipe: tuple  # pass configs
    runtime: str  # a key of core.runtime.registry.RUNTIMES
    weight_class: str  # "fp32", "int8" or "int4": what its weights are stored in


CANDIDATES = {
    "fp32_eager": Candidate((), "torch", "fp32"),
    "fp32_ort": Candidate((), "ort", "fp32"),
    "int8_weight_only_ort_matmulnbits": Candidate((), "ort-w8", "int8"),
    "int8_dynamic_ort": Candidate((), "ort-int8", "int8"),
    "int4_weight_only_ort_matmulnbits": Candidate((), "ort-w4", "int4"),
    # onnxruntime-genai's fused graph (core.onnx.fused): GQA, fused QKV, MatMulNBits.
    "fp32_ort_fused": Candidate((), "ort-fused", "fp32"),
    "int8_weight_only_ort_fused": Candidate((), "ort-fused-w8", "int8"),
    "int4_weight_only_ort_fused": Candidate((), "ort-fused-w4", "int4"),
    "int4_g128_gptq_int8_head_compiled": Candidate(
        (R["int4_weight_only"](128, "gptq"), R["int8_head"]()), "torch-compile", "int4"
    ),
}
BASELINE = "fp32_eager"


def _build(original, name: str, candidate: Candidate):
    settings = ExperimentSettings()
    recipe = Recipe(candidate.recipe)
    start = time.perf_counter()
    built = build_compressed(original, recipe, settings) if candidate.recipe else None
    loaded = built.loaded if built is not None else original
    tokens = ROUND.prompt_tokens + ROUND.new_tokens
    prepared = prepare(loaded, candidate.runtime, tokens)
    print(f"  built {name} in {time.perf_counter() - start:.0f} s", flush=True)
    return prepared.loaded


def _ppl(loaded) -> float:
    return compute_perplexity(loaded.model, loaded.tokenizer, QUICK_PROTOCOL).ppl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", default=None, help="a number, or auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=list(CANDIDATES), default=None)
    args = parser.parse_args()

    names = [BASELINE, *[n for n in (args.only or CANDIDATES) if n != BASELINE]]
    original = load_model(args.model)
    threads = _threads(args.threads, original)
    print(f"model {original.source}, {threads} threads", flush=True)
    built = {name: _build(original, name, CANDIDATES[name]) for name in names}

    bandwidth_before = memory_bandwidth_bytes_per_s()
    print(f"timing {len(names)} configurations, {args.rounds} interleaved rounds", flush=True)
    times = interleaved_rounds(
        built, args.rounds, ROUND, lambda done: print(f"  round {done} done", flush=True)
    )
    bandwidth = max(bandwidth_before, memory_bandwidth_bytes_per_s())
    print(f"memory bandwidth (best large copy or read): {bandwidth / 1e9:.1f} GB/s", flush=True)

    rows = {}
    for name in names:
        decode = sorted(times.decode_ms_per_token[name])
        read = bytes_read_per_token(built[name].model)
        floor_ms = read / bandwidth * 1e3
        rows[name] = {
            "recipe": name,
            "runtime": CANDIDATES[name].runtime,
            "weights": CANDIDATES[name].weight_class,
            "decode_ms_per_token": statistics.median(decode),
            "decode_ms_p10_p90": [_quantile(decode, 0.1), _quantile(decode, 0.9)],
            "bytes_read_per_token": read,
            "floor_ms": floor_ms,
            "ratio_to_floor": statistics.median(decode) / floor_ms,
            "ppl": _ppl(built[name]),
        }
        print(f"  scored {name}: ppl {rows[name]['ppl']:.2f}", flush=True)
    base = rows[BASELINE]
    for row in rows.values():
        row["speedup_vs_fp32_eager"] = base["decode_ms_per_token"] / row["decode_ms_per_token"]
        row["ppl_delta_pct"] = (row["ppl"] / base["ppl"] - 1) * 100
    _print_table(rows, bandwidth, threads)
    print(json.dumps(_summary(rows, bandwidth, threads)))


def _threads(value, original) -> int:
    if value == "auto":
        from core.jobs.threads import chosen_threads

        return set_threads(chosen_threads(original, "torch"))
    return set_threads(int(value) if value else None)


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def _print_table(rows: dict, bandwidth: float, threads: int) -> None:
    print(f"\n{threads} threads, bandwidth {bandwidth / 1e9:.1f} GB/s")
    header = f"{'configuration':38s} {'ms/token':>9s} {'p10-p90':>13s} {'x fp32':>7s}"
    print(header + f" {'MB/step':>8s} {'floor':>6s} {'x floor':>8s} {'ppl':>7s} {'dppl%':>7s}")
    for r in rows.values():
        p10, p90 = r["decode_ms_p10_p90"]
        print(
            f"{r['recipe']:38s} {r['decode_ms_per_token']:9.2f} {p10:6.2f}-{p90:6.2f} "
            f"{r['speedup_vs_fp32_eager']:7.2f} {r['bytes_read_per_token'] / 1e6:8.1f} "
            f"{r['floor_ms']:6.2f} {r['ratio_to_floor']:8.2f} {r['ppl']:7.2f} "
            f"{r['ppl_delta_pct']:+7.2f}"
        )


def _summary(rows: dict, bandwidth: float, threads: int) -> dict:
    quantized = [r for r in rows.values() if r["weights"] != "fp32"]
    int8_class = [r for r in quantized if r["ppl_delta_pct"] <= INT8_CLASS_MAX_PPL_DELTA_PCT]
    int4_class = [r for r in quantized if r["weights"] == "int4"]
    best = min(rows.values(), key=lambda r: r["decode_ms_per_token"])
    int8_best = min(int8_class, key=lambda r: r["decode_ms_per_token"], default=None)
    int4_best = min(int4_class, key=lambda r: r["decode_ms_per_token"], default=None)
    return {
        "threads": threads,
        "bandwidth_gb_s": bandwidth / 1e9,
        "fp32_eager_ms": rows[BASELINE]["decode_ms_per_token"],
        "int8_best_ms": int8_best and int8_best["decode_ms_per_token"],
        "int8_best_recipe": int8_best and int8_best["recipe"],
        "int8_ppl_delta_pct": int8_best and int8_best["ppl_delta_pct"],
        "int8_speedup": int8_best and int8_best["speedup_vs_fp32_eager"],
        "int4_best_ms": int4_best and int4_best["decode_ms_per_token"],
        "int4_best_recipe": int4_best and int4_best["recipe"],
        "int4_ppl_delta_pct": int4_best and int4_best["ppl_delta_pct"],
        "int4_speedup": int4_best and int4_best["speedup_vs_fp32_eager"],
        "best_ms_per_token": best["decode_ms_per_token"],
        "best_recipe": best["recipe"],
        "best_ppl_delta_pct": best["ppl_delta_pct"],
        "floor_ms": best["floor_ms"],
        "best_ratio_to_floor": best["ratio_to_floor"],
        "rows": list(rows.values()),
    }


if __name__ == "__main__":
    main()
