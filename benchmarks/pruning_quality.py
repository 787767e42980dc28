"""50% pruning quality on the default model: magnitude (prune_unstructured,
one threshold per layer), Wanda and SparseGPT unstructured, and each of
Wanda and SparseGPT at 2:4, in one run.

Perplexity on the quick protocol's report-split windows; each method's
increase against the original, and that increase as a multiple of
magnitude's. Target (issue 14): Wanda or SparseGPT at 50% has at most 1/10
of magnitude's increase. Calibration: 16 windows of 256 tokens of the
calibration split, the run's own default (ExperimentSettings), so the
numbers are what the window and the CLI produce. Sizes are measured too:
the zeros are stored dense, so every row must keep the original's bytes.
Only quality is measured; seconds are printed for orientation.

    .venv/bin/python benchmarks/pruning_quality.py [--threads 1] [--rows NAME ...]
        [--calibration-windows 16] [--calibration-length 256] [--split dev]
        [--smoke-model DIR]

Last line: {"protocol", "original_ppl", "calibration", "rows": [{"row",
"recipe", "ppl", "ppl_ci95_low", "ppl_ci95_high", "increase_pct",
"ratio_to_magnitude", "sparsity", "bytes"}], "target": {...}}
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows
from core.models.linear_layers import block_linears
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes.calibration import calibration_windows
from core.passes.recipe import Recipe, apply_recipe
from core.runtime.device import set_threads

MAGNITUDE = "magnitude_50"
ROWS = {
    MAGNITUDE: (R["prune_unstructured"](0.5),),
    "wanda_50": (R["prune_wanda"](0.5),),
    "sparsegpt_50": (R["prune_sparsegpt"](0.5),),
    "wanda_2of4": (R["prune_wanda"](0.5, "2:4"),),
    "sparsegpt_2of4": (R["prune_sparsegpt"](0.5, "2:4"),),
}
TARGET_RATIO = 0.1
TARGET_ROWS = ("wanda_50", "sparsegpt_50")


def block_sparsity(model) -> float:
    """Measured fraction of zero weights in the block linears."""
    zeros = total = 0
    for _, linear in block_linears(model):
        zeros += int((linear.weight == 0).sum())
        total += linear.weight.numel()
    return zeros / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--calibration-windows", type=int, default=16)
    parser.add_argument("--calibration-length", type=int, default=256)
    parser.add_argument("--split", default="report", choices=("report", "dev"))
    parser.add_argument("--smoke-model", default=None, help="a tiny model folder (a check)")
    args = parser.parse_args()
    began = time.perf_counter()
    threads = set_threads(args.threads)
    protocol = replace(QUICK_PROTOCOL, split=args.split)
    if args.smoke_model:
        protocol = replace(protocol, source="pydoc", context_tokens=128, stride=64)
        protocol = replace(protocol, quick_windows=3)
    loaded = load_model(args.smoke_model or "default", device="cpu")
    tokenizer = loaded.tokenizer
    windows = perplexity_windows(tokenizer, protocol)
    calibration = calibration_windows(
        tokenizer, args.calibration_windows, args.calibration_length, source=protocol.source
    )
    original = compute_perplexity(loaded.model, tokenizer, protocol, windows=windows)
    original_bytes = measure_size(loaded.model).total_bytes
    base = original.ppl
    calibration_line = f"{len(calibration)} windows of {calibration[0].numel()} tokens"
    print(f"{args.smoke_model or 'default model'}, fp32, {threads} threads")
    print(f"perplexity: {original.protocol}")
    print(f"calibration: {calibration_line} of the calibration split")
    print(f"original: ppl {base:.3f}, {original_bytes} bytes", flush=True)

    names = args.rows if MAGNITUDE in args.rows else [MAGNITUDE, *args.rows]
    rows, notes = [], {}
    for name in names:
        start = time.perf_counter()
        recipe = Recipe(ROWS[name])
        compressed = apply_recipe(loaded, recipe, calibration)
        built = time.perf_counter() - start
        model = compressed.loaded.model
        ppl = compute_perplexity(model, tokenizer, protocol, windows=windows)
        size = measure_size(model).total_bytes
        rows.append(
            {
                "row": name,
                "recipe": recipe.name,
                "ppl": round(ppl.ppl, 4),
                "ppl_ci95_low": None if ppl.ci95_low is None else round(ppl.ci95_low, 4),
                "ppl_ci95_high": None if ppl.ci95_high is None else round(ppl.ci95_high, 4),
                "increase_pct": round((ppl.ppl / base - 1) * 100, 3),
                "sparsity": round(block_sparsity(model), 5),
                "bytes": size,
                "build_s": round(built),
            }
        )
        notes[name] = compressed.notes
        print(
            f"{name}: ppl {ppl.ppl:.3f} ({rows[-1]['increase_pct']:+.2f}%), block sparsity "
            f"{rows[-1]['sparsity']:.4f}, {size} bytes, built in {built:.0f} s, "
            f"{time.perf_counter() - start:.0f} s with evaluation",
            flush=True,
        )
        del compressed, model

    magnitude = next(r for r in rows if r["row"] == MAGNITUDE)
    for row in rows:
        if magnitude["increase_pct"] > 0:
            row["ratio_to_magnitude"] = round(row["increase_pct"] / magnitude["increase_pct"], 4)

    print()
    print(f"{'row':16s} {'ppl':>9s} {'95% CI':>19s} {'increase':>10s} {'/ magn.':>8s} {'MB':>7s}")
    print(f"{'original':16s} {base:9.3f} {'':>19s} {'':>10s} {'':>8s} {original_bytes / 1e6:7.1f}")
    for row in rows:
        ci = (
            f"[{row['ppl_ci95_low']:.2f}, {row['ppl_ci95_high']:.2f}]"
            if row["ppl_ci95_low"] is not None
            else "-"
        )
        ratio = row.get("ratio_to_magnitude")
        print(
            f"{row['row']:16s} {row['ppl']:9.3f} {ci:>19s} {row['increase_pct']:+9.2f}% "
            f"{'-' if ratio is None else f'{ratio:.4f}':>8s} {row['bytes'] / 1e6:7.1f}"
        )
    for name, lines in notes.items():
        for line in lines:
            print(f"note ({name}): {line}")
    same_size = all(r["bytes"] == original_bytes for r in rows)
    kept = "every row keeps" if same_size else "NOT every row keeps"
    print(f"sizes: {kept} the original's bytes")

    summary: dict = {
        "threads": threads,
        "protocol": original.protocol,
        "calibration": calibration_line,
        "original_ppl": round(base, 4),
        "original_bytes": original_bytes,
        "rows": rows,
        "sizes_unchanged": same_size,
    }
    candidates = [r for r in rows if r["row"] in TARGET_ROWS and "ratio_to_magnitude" in r]
    if candidates:
        best = min(candidates, key=lambda r: r["ratio_to_magnitude"])
        met = best["ratio_to_magnitude"] <= TARGET_RATIO
        print(
            f"target: Wanda or SparseGPT at 50% increase <= {TARGET_RATIO}x magnitude's: best "
            f"{best['row']} {best['ratio_to_magnitude']:.4f}x -> {'met' if met else 'NOT met'}"
        )
        summary["target"] = {
            "ratio": TARGET_RATIO,
            "best_row": best["row"],
            "best_ratio": best["ratio_to_magnitude"],
            "met": met,
        }
    summary["seconds"] = round(time.perf_counter() - began)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
