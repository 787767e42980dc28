"""One row per compression recipe on the default model, measured in one run:
bytes as exported, prefill ms, decode ms/token (the protocol of
core/measure/speed.py), perplexity (quick protocol of core/evaluate/perplexity.py)
and its change against the original, top-1 agreement with the original.

Calibration uses the fixed calibration split, never the report split.

    .venv/bin/python benchmarks/compression_table.py [--threads N] [--only NAME ...]

Every configuration is timed twice: PyTorch eager, and with the decode step
compiled (core/runtime/compiled_runner.py: torch.compile, frozen weights,
static cache; compile time printed, never timed). Two speedups for each:
against the original in PyTorch eager (runtime and compression gains
together, the baseline the targets name), and against the original on the
same runtime (the compression's own gain). Their ratio is the runtime's gain.

Last line: {"rows": [{"recipe", "bytes", "block_linear_bytes", "prefill_ms",
"decode_ms_per_token", "decode_ms_per_token_compiled", "prefill_ms_compiled",
"speedup_vs_eager_fp32", "speedup_compiled_vs_eager_fp32",
"speedup_compiled_vs_compiled_fp32", "compile_s", "ppl", "ppl_ci95_low",
"ppl_ci95_high", "ppl_delta_pct", "top1_agreement"}, ...]}
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
from core.measure.interleave import ONE_RUN, interleaved_rounds
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes.calibration import calibration_windows
from core.passes.recipe import Recipe, apply_recipe
from core.runtime.compiled_runner import compile_decode, keep_compiled
from core.runtime.device import set_threads
from core.runtime.runners import COMPILED_RUNNER, TORCH_RUNNER

# The 17 layers the int4 sensitivity map named most sensitive on the dev split
# (benchmarks/mixed_precision.py; results/mixed_precision_cpu_2core.txt):
# int8 there, int4 g128 GPTQ elsewhere.
MIXED_INT8_LAYERS = "0,1,2,3,9,11,12,13,14,15,16,18,19,22,23,28,29"
MIXED_INT4_LAYERS = "4,5,6,7,8,10,17,20,21,24,25,26,27"

ROWS = {
    "original_fp32": (),
    "cast_bf16": (R["cast"]("bfloat16"),),
    "int8_weight_only": (R["int8_weight_only"](),),
    "int8_dynamic_w8a8": (R["int8_dynamic"](),),
    "int4_g128_rtn": (R["int4_weight_only"](128, "rtn"),),
    "int4_g128_gptq": (R["int4_weight_only"](128, "gptq"),),
    "int4_g128_awq": (R["int4_weight_only"](128, "awq"),),
    "int4_g128_gptq_act_order": (R["int4_weight_only"](128, "gptq_act_order"),),
    "int4_g128_rtn_int8_head": (R["int4_weight_only"](128, "rtn"), R["int8_head"]()),
    "int4_g128_gptq_int8_head": (R["int4_weight_only"](128, "gptq"), R["int8_head"]()),
    "int4_g128_gptq_int4_head_g32": (
        R["int4_weight_only"](128, "gptq"),
        R["int8_head"](bits=4, group_size=32),
    ),
    "mixed_int8_sensitive_int4_g128_gptq": (
        R["int8_weight_only"](layers=MIXED_INT8_LAYERS),
        R["int4_weight_only"](128, "gptq", layers=MIXED_INT4_LAYERS),
    ),
    "int4_g64_rtn": (R["int4_weight_only"](64, "rtn"),),
    "int4_g64_gptq": (R["int4_weight_only"](64, "gptq"),),
    "prune_unstructured_50": (R["prune_unstructured"](0.5),),
    "prune_wanda_50": (R["prune_wanda"](0.5),),
    "prune_sparsegpt_50": (R["prune_sparsegpt"](0.5),),
    "prune_mlp_25": (R["prune_mlp"](0.25),),
    "prune_heads_25": (R["prune_heads"](0.25),),
    "prune_layers_2": (R["prune_layers"](2),),
    "low_rank_50": (R["low_rank"](0.5),),
    "low_rank_aware_svd_llm_20": (R["low_rank_aware"](0.2, "svd_llm"),),
}


BASELINE = "original_fp32"


def block_linear_bytes(model) -> int:
    """Bytes of the linear layers inside the transformer blocks (attention and
    MLP projections) in whatever form a pass left them (fp32, int8, packed
    int4 with scales, factorised): what the quantisation passes convert.
    Norms and the embeddings/head are not counted."""
    from core.models.linear_layers import component_of
    from core.models.size import stored_tensors

    linears = {
        name
        for name, module in model.named_modules()
        if component_of(name) in ("attention", "mlp")
        and not list(module.children())
        and "norm" not in type(module).__name__.lower()
    }
    return sum(
        t.nbytes
        for t in stored_tensors(model)
        if t.name in linears or t.name.rpartition(".")[0] in linears
    )


def speedups(decode_ms: dict[tuple[str, str], float], name: str) -> dict[str, float]:
    """Decode speedups of row ``name`` from median ms/token keyed by (row,
    runner): against the original in eager (fp32), and the compiled run also
    against the compiled original, so runtime and compression gains separate."""
    eager_fp32 = decode_ms[BASELINE, TORCH_RUNNER]
    out = {"speedup_vs_eager_fp32": eager_fp32 / decode_ms[name, TORCH_RUNNER]}
    compiled = decode_ms.get((name, COMPILED_RUNNER))
    if compiled is not None:
        out["speedup_compiled_vs_eager_fp32"] = eager_fp32 / compiled
        compiled_fp32 = decode_ms.get((BASELINE, COMPILED_RUNNER))
        if compiled_fp32 is not None:
            out["speedup_compiled_vs_compiled_fp32"] = compiled_fp32 / compiled
    return out


HEADER = (
    f"{'recipe':24s} {'MB':>7s} {'linMB':>7s} {'prefill':>8s} {'ms/tok':>7s} {'x eager':>7s} "
    f"{'compiled':>8s} {'x eager':>7s} {'x comp.':>7s} {'ppl':>8s} {'dppl%':>8s} {'top1':>6s}"
)


def table_line(row: dict) -> str:
    """One printed row; a speedup that was not measured prints as '-'."""

    def number(key: str, width: int, digits: int) -> str:
        value = row.get(key)
        return f"{'-':>{width}s}" if value is None else f"{value:{width}.{digits}f}"

    return (
        f"{row['recipe']:24s} {row['bytes'] / 1e6:7.1f} {row['block_linear_bytes'] / 1e6:7.1f} "
        f"{row['prefill_ms']:8.1f} {row['decode_ms_per_token']:7.2f} "
        f"{number('speedup_vs_eager_fp32', 7, 2)} {number('decode_ms_per_token_compiled', 8, 2)} "
        f"{number('speedup_compiled_vs_eager_fp32', 7, 2)} "
        f"{number('speedup_compiled_vs_compiled_fp32', 7, 2)} "
        f"{row['ppl']:8.3f} {row['ppl_delta_pct']:+8.2f} {row['top1_agreement']:6.3f}"
    )


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
    if BASELINE not in names:
        names = [BASELINE, *names]
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
            "block_linear_bytes": block_linear_bytes(model),
            "ppl": round(ppl.ppl, 4),
            "ppl_ci95_low": round(ppl.ci95_low, 4) if ppl.ci95_low is not None else None,
            "ppl_ci95_high": round(ppl.ci95_high, 4) if ppl.ci95_high is not None else None,
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

    base_ppl = rows[BASELINE]["ppl"]
    medians = {key: statistics.median(values) for key, values in decode.items()}
    for name in names:
        row = rows[name]
        eager = name, TORCH_RUNNER
        row["prefill_ms"] = round(statistics.median(prefill[eager]), 2)
        row["decode_ms_per_token"] = round(medians[eager], 3)
        row["decode_ms_per_token_rounds"] = [round(v, 2) for v in decode[eager]]
        row["ppl_delta_pct"] = round((row["ppl"] / base_ppl - 1) * 100, 3)
        if (name, COMPILED_RUNNER) in decode:
            values = decode[name, COMPILED_RUNNER]
            row["decode_ms_per_token_compiled"] = round(medians[name, COMPILED_RUNNER], 3)
            row["decode_ms_per_token_compiled_rounds"] = [round(v, 2) for v in values]
            row["prefill_ms_compiled"] = round(statistics.median(prefill[name, COMPILED_RUNNER]), 2)
        row |= {k: round(v, 3) for k, v in speedups(medians, name).items()}
    print(
        "x eager: decode speedup against original_fp32 in PyTorch eager; compiled: ms/token "
        "with torch.compile; x comp.: against original_fp32 compiled (the compression's own gain)"
    )
    print(HEADER)
    for name in names:
        print(table_line(rows[name]))
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
