"""One row per compression recipe on the default model, measured in one run:
bytes as exported, prefill ms, decode ms/token (the protocol of
core/measure.py), perplexity (quick protocol of core/evaluate/perplexity.py)
and its change against the original, top-1 agreement with the original.

Calibration uses the fixed calibration split, never the report split.

    .venv/bin/python benchmarks/compression_table.py [--threads N] [--only NAME ...]

Every configuration is timed twice: PyTorch eager, and with the decode step
compiled (core/runtime/compiled_runner.py: torch.compile, frozen weights,
static cache; compile time printed, never timed). Speedups are against the
original in eager, the baseline the targets name.

Last line: {"rows": [{"recipe", "bytes", "quantized_layer_bytes", "prefill_ms",
"decode_ms_per_token", "decode_ms_per_token_compiled", "prefill_ms_compiled",
"compile_s", "ppl", "ppl_delta_pct", "top1_agreement"}, ...]}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from core.errors import UnsupportedModelError
from core.evaluate.fidelity import compute_fidelity
from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows
from core.interleave import ONE_RUN, interleaved_rounds
from core.loading import load_model
from core.passes import REGISTRY as R
from core.passes.calibration import calibration_windows
from core.recipe import Recipe, apply_recipe
from core.runtime.compiled_runner import compile_decode, keep_compiled
from core.runtime.device import set_threads
from core.runtime.runners import COMPILED_RUNNER, TORCH_RUNNER
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
    parser.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds")
    parser.add_argument(
        "--eager-only", action="store_true", help="skip the compiled runner (torch.compile)"
    )
    args = parser.parse_args()
    threads = set_threads(args.threads)
    loaded = load_model("default")
    tokenizer = loaded.tokenizer
    windows = perplexity_windows(tokenizer, QUICK_PROTOCOL)
    calibration = calibration_windows(tokenizer)
    names = args.only or list(ROWS)
    if "original_fp32" not in names:
        names = ["original_fp32", *names]
    print(f"default model, {threads} threads")
    print(f"perplexity: {QUICK_PROTOCOL.describe()}; top-1 over {args.fidelity_windows} windows")

    # Phase 1: build every configuration and measure its size and quality.
    built, rows = {}, {}
    for name in names:
        recipe = Recipe(ROWS[name])
        start = time.perf_counter()
        compressed = apply_recipe(loaded, recipe, calibration)
        model = compressed.loaded.model
        ppl = compute_perplexity(model, tokenizer, QUICK_PROTOCOL, windows=windows)
        fidelity = compute_fidelity(
            loaded.model, model, tokenizer, windows=windows[: args.fidelity_windows]
        )
        built[name] = compressed.loaded
        rows[name] = {
            "recipe": name,
            "passes": recipe.to_dict()["passes"],
            "bytes": measure_size(model).total_bytes,
            "quantized_layer_bytes": block_bytes(model),
            "ppl": round(ppl.ppl, 4),
            "ppl_ci95": round(ppl.ci95_halfwidth or 0.0, 4),
            "top1_agreement": round(fidelity.top1_agreement, 5),
            "build_and_eval_s": round(time.perf_counter() - start, 1),
            "notes": compressed.notes,
        }
        print(f"built {name}: ppl {ppl.ppl:.3f}, top-1 {fidelity.top1_agreement:.3f}", flush=True)

    # Phase 2: speed, interleaved. This machine drifts by tens of percent
    # over minutes, so every configuration is measured once per round under
    # each runner, in a rotating order, and the median over rounds is reported.
    one_run = ONE_RUN
    print(f"speed: {args.rounds} interleaved rounds of: {one_run.describe()}")
    loaded_for = {(name, TORCH_RUNNER): built[name] for name in names}
    if not args.eager_only:
        keep_compiled(len(names))  # all of them alive at once, to interleave
        for name in names:
            try:
                rows[name]["compile_s"] = round(
                    compile_decode(built[name].model, one_run.prompt_tokens + one_run.new_tokens), 1
                )
            except UnsupportedModelError as error:
                rows[name]["notes"].append(str(error))
                continue
            compiled = dataclasses.replace(built[name], runner=COMPILED_RUNNER)
            loaded_for[name, COMPILED_RUNNER] = compiled
            print(f"compiled {name} in {rows[name]['compile_s']} s", flush=True)
    times = interleaved_rounds(
        loaded_for,
        args.rounds,
        one_run,
        lambda done: print(f"round {done}/{args.rounds} done", flush=True),
    )
    prefill, decode = times.prefill_ms, times.decode_ms_per_token

    base_ppl = rows["original_fp32"]["ppl"]
    header = (
        f"{'recipe':24s} {'MB':>7s} {'blocksMB':>8s} {'prefill':>8s} {'ms/tok':>7s} "
        f"{'speedup':>7s} {'compiled':>8s} {'speedup':>7s} {'ppl':>8s} {'dppl%':>8s} {'top1':>6s}"
    )
    print("speedup: against original_fp32 in PyTorch eager; compiled: ms/token, torch.compile")
    print(header)
    base_decode = statistics.median(decode["original_fp32", TORCH_RUNNER])
    for name in names:
        row = rows[name]
        eager = name, TORCH_RUNNER
        row["prefill_ms"] = round(statistics.median(prefill[eager]), 2)
        row["decode_ms_per_token"] = round(statistics.median(decode[eager]), 3)
        row["decode_ms_per_token_rounds"] = [round(v, 2) for v in decode[eager]]
        row["ppl_delta_pct"] = round((row["ppl"] / base_ppl - 1) * 100, 3)
        compiled_text = f"{'-':>8s} {'-':>7s}"
        if (name, COMPILED_RUNNER) in decode:
            values = decode[name, COMPILED_RUNNER]
            row["decode_ms_per_token_compiled"] = round(statistics.median(values), 3)
            row["decode_ms_per_token_compiled_rounds"] = [round(v, 2) for v in values]
            row["prefill_ms_compiled"] = round(statistics.median(prefill[name, COMPILED_RUNNER]), 2)
            compiled = row["decode_ms_per_token_compiled"]
            compiled_text = f"{compiled:8.2f} {base_decode / compiled:7.2f}"
        speedup = base_decode / row["decode_ms_per_token"]
        print(
            f"{name:24s} {row['bytes'] / 1e6:7.1f} {row['quantized_layer_bytes'] / 1e6:8.1f} "
            f"{row['prefill_ms']:8.1f} {row['decode_ms_per_token']:7.2f} {speedup:7.2f} "
            f"{compiled_text} "
            f"{row['ppl']:8.3f} {row['ppl_delta_pct']:+8.2f} {row['top1_agreement']:6.3f}"
        )
    for name in names:
        for note in rows[name]["notes"]:
            print(f"note ({name}): {note}")
    print(
        json.dumps(
            {"threads": threads, "rounds": args.rounds, "rows": [rows[name] for name in names]}
        )
    )


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
