"""One row per compression recipe on the default model, measured in one run:
bytes as exported, prefill ms, decode ms/token (the protocol of
core/measure.py), perplexity (quick protocol of core/evaluate/perplexity.py)
and its change against the original, top-1 agreement with the original.

Calibration uses the fixed calibration split, never the report split.

    .venv/bin/python benchmarks/compression_table.py [--threads N] [--only NAME ...]

Last line: {"rows": [{"recipe", "bytes", "quantized_layer_bytes", "prefill_ms",
"decode_ms_per_token", "ppl", "ppl_delta_pct", "top1_agreement"}, ...]}
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from core.evaluate.fidelity import compute_fidelity
from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows

from core.loading import load_model
from core.measure import BenchSettings, run_benchmark
from core.passes import REGISTRY as R
from core.passes.calibration import calibration_windows
from core.recipe import Recipe, apply_recipe
from core.runtime.device import set_threads
from core.size import measure_size

ROWS = {
    "original_fp32": (),
    "cast_bf16": (R["cast"]("bfloat16"),),
    "int8_weight_only": (R["int8_weight_only"](),),
    "int8_dynamic_w8a8": (R["int8_dynamic"](),),
    "int4_g128_rtn": (R["int4_weight_only"](128, "rtn"),),
    "int4_g128_gptq": (R["int4_weight_only"](128, "gptq"),),
    "int4_g64_rtn": (R["int4_weight_only"](64, "rtn"),),
    "int4_g64_gptq": (R["int4_weight_only"](64, "gptq"),),
    "prune_unstructured_50": (R["prune_unstructured"](0.5),),
    "prune_mlp_25": (R["prune_mlp"](0.25),),
    "prune_heads_25": (R["prune_heads"](0.25),),
    "prune_layers_2": (R["prune_layers"](2),),
    "low_rank_50": (R["low_rank"](0.5),),
}


def block_bytes(model) -> int:
    sizes = measure_size(model).by_component
    return sizes["attention"] + sizes["mlp"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="row names to run")
    parser.add_argument("--fidelity-windows", type=int, default=4)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    loaded = load_model("default")
    tokenizer = loaded.tokenizer
    windows = perplexity_windows(tokenizer, QUICK_PROTOCOL)
    calibration = calibration_windows(tokenizer)
    settings = BenchSettings(
        prompt_tokens=128, new_tokens=32, warmup=1, min_repeats=3, min_time_s=3.0
    )
    names = args.only or list(ROWS)
    if "original_fp32" not in names:
        names = ["original_fp32", *names]
    print(f"default model, {threads} threads; speed: {settings.describe()}")
    print(f"perplexity: {QUICK_PROTOCOL.describe()}; top-1 over {args.fidelity_windows} windows")
    rows = []
    base_ppl = None
    header = (
        f"{'recipe':24s} {'MB':>8s} {'blocks MB':>9s} {'prefill':>8s} {'ms/tok':>7s} "
        f"{'ppl':>7s} {'dppl%':>7s} {'top1':>6s}  notes"
    )
    print(header)
    for name in names:
        recipe = Recipe(ROWS[name])
        start = time.perf_counter()
        compressed = apply_recipe(loaded, recipe, calibration)
        apply_s = time.perf_counter() - start
        model = compressed.loaded.model
        bench = run_benchmark(compressed.loaded, settings)
        ppl = compute_perplexity(model, tokenizer, QUICK_PROTOCOL, windows=windows)
        if base_ppl is None:
            base_ppl = ppl.ppl
        fidelity = compute_fidelity(
            loaded.model, model, tokenizer, windows=windows[: args.fidelity_windows]
        )
        row = {
            "recipe": name,
            "passes": recipe.to_dict()["passes"],
            "bytes": measure_size(model).total_bytes,
            "quantized_layer_bytes": block_bytes(model),
            "prefill_ms": round(bench.prefill_ms.median, 2),
            "decode_ms_per_token": round(bench.decode_ms_per_token.median, 3),
            "ppl": round(ppl.ppl, 4),
            "ppl_ci95": round(ppl.ci95_halfwidth or 0.0, 4),
            "ppl_delta_pct": round((ppl.ppl / base_ppl - 1) * 100, 3),
            "top1_agreement": round(fidelity.top1_agreement, 5),
            "apply_s": round(apply_s, 2),
            "notes": compressed.notes,
        }
        rows.append(row)
        print(
            f"{name:24s} {row['bytes'] / 1e6:8.1f} {row['quantized_layer_bytes'] / 1e6:9.1f} "
            f"{row['prefill_ms']:8.1f} {row['decode_ms_per_token']:7.2f} {row['ppl']:7.3f} "
            f"{row['ppl_delta_pct']:+7.2f} {row['top1_agreement']:6.3f}  "
            f"{'; '.join(compressed.notes)[:80]}",
            flush=True,
        )
        del compressed, model
    base = rows[0]
    print("\nratios against the original (same run):")
    for row in rows[1:]:
        speed = base["decode_ms_per_token"] / row["decode_ms_per_token"]
        shrink = row["quantized_layer_bytes"] / base["quantized_layer_bytes"]
        print(f"  {row['recipe']:24s} decode x{speed:.2f}  block bytes x{shrink:.3f}")
    print(json.dumps({"threads": threads, "rows": rows}))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
