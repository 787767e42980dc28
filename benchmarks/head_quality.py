"""Quality of the quantized head and embeddings (``int8_head``, bits 8 or 4)
on the default model, alone and beside int4 g128 GPTQ blocks: bytes as
stored (and their ratio to fp32), perplexity on the quick protocol's
report split and its change, top-1 agreement with the original on 4 of its
windows. No timing: only quality and size are measured.

The GPTQ blocks are built once (calibration split) and each head variant is
applied on top of that build, which is what the chained recipe builds: the
head pass reads no calibration and GPTQ's statistics are the blocks' inputs.

``--dev`` also scores every row on the dev split, to choose the int4 head's
default group size. Rule, fixed before the run: with GPTQ blocks, the
largest group size whose dev perplexity is within 1% of the lowest of
g32/g64/g128 (larger groups store less). Chosen: g32
(results/head_quality_cpu_2core_shared.txt: dev ppl 46.23 / 47.74 / 48.71).

    .venv/bin/python benchmarks/head_quality.py [--threads 1] [--dev]

Last line: {"protocol", "fp32_bytes", "rows": [{"recipe", "passes", "bytes",
"bytes_ratio_fp32", "ppl", "ppl_ci95_low", "ppl_ci95_high", "ppl_delta_pct",
"top1_agreement", "dev_ppl"}]}
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from core.evaluate.fidelity import compute_fidelity
from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes.calibration import calibration_windows
from core.passes.recipe import Recipe, apply_recipe
from core.runtime.device import set_threads

GPTQ = R["int4_weight_only"](128, "gptq")
# name -> (blocks quantized with GPTQ?, head pass or None)
ROWS = {
    "original_fp32": (False, None),
    "int8_head": (False, R["int8_head"]()),
    "int4_head_g128": (False, R["int8_head"](bits=4, group_size=128)),
    "int4_g128_gptq": (True, None),
    "int4_g128_gptq_int8_head": (True, R["int8_head"]()),
    "int4_g128_gptq_int4_head": (True, R["int8_head"](bits=4, group_size=128)),
    "int4_g128_gptq_int4_head_g64": (True, R["int8_head"](bits=4, group_size=64)),
    "int4_g128_gptq_int4_head_g32": (True, R["int8_head"](bits=4, group_size=32)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dev", action="store_true", help="also score on the dev split")
    parser.add_argument("--only", nargs="*", default=None, help="row names to run")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    loaded = load_model("default")
    tokenizer = loaded.tokenizer
    windows = perplexity_windows(tokenizer, QUICK_PROTOCOL)
    dev_protocol = replace(QUICK_PROTOCOL, split="dev")
    dev_windows = perplexity_windows(tokenizer, dev_protocol) if args.dev else None
    print(f"default model, {threads} threads; perplexity: {QUICK_PROTOCOL.describe()}")
    fp32_bytes = measure_size(loaded.model).total_bytes
    names = args.only or list(ROWS)
    if "original_fp32" not in names:
        names = ["original_fp32", *names]
    blocks = None
    if any(ROWS[n][0] for n in names):
        start = time.perf_counter()
        blocks = apply_recipe(loaded, Recipe((GPTQ,)), calibration_windows(tokenizer))
        print(f"GPTQ blocks built in {time.perf_counter() - start:.0f} s", flush=True)
    rows, base_ppl = [], None
    for name in names:
        gptq, head = ROWS[name]
        base = blocks.loaded if gptq else loaded
        built = apply_recipe(base, Recipe((head,))) if head is not None else None
        model = built.loaded.model if built is not None else base.model
        passes = ([GPTQ] if gptq else []) + ([head] if head is not None else [])
        ppl = compute_perplexity(model, tokenizer, QUICK_PROTOCOL, windows=windows)
        base_ppl = base_ppl or ppl.ppl
        fidelity = compute_fidelity(loaded.model, model, tokenizer, windows=windows[:4])
        size = measure_size(model).total_bytes
        row = {
            "recipe": name,
            "passes": Recipe(tuple(passes)).to_dict()["passes"],
            "bytes": size,
            "bytes_ratio_fp32": round(size / fp32_bytes, 4),
            "ppl": round(ppl.ppl, 4),
            "ppl_ci95_low": None if ppl.ci95_low is None else round(ppl.ci95_low, 4),
            "ppl_ci95_high": None if ppl.ci95_high is None else round(ppl.ci95_high, 4),
            "ppl_delta_pct": round(100 * (ppl.ppl / base_ppl - 1), 2),
            "top1_agreement": round(fidelity.top1_agreement, 5),
            "notes": built.notes if built is not None else [],
        }
        if dev_windows is not None:
            dev = compute_perplexity(model, tokenizer, dev_protocol, windows=dev_windows)
            row["dev_ppl"] = round(dev.ppl, 4)
        rows.append(row)
        dev_text = f", dev ppl {row['dev_ppl']:.3f}" if "dev_ppl" in row else ""
        print(
            f"{name:32s} {size / 1e6:7.1f} MB  x{row['bytes_ratio_fp32']:.4f}  "
            f"ppl {row['ppl']:8.3f} ({row['ppl_delta_pct']:+.2f}%)  "
            f"top-1 {row['top1_agreement']:.3f}{dev_text}",
            flush=True,
        )
    if args.dev:
        choice = _dev_choice(rows)
        if choice:
            print(f"chosen on dev: int4 head group size {choice}")
    print(
        json.dumps(
            {"protocol": QUICK_PROTOCOL.describe(), "fp32_bytes": fp32_bytes} | {"rows": rows}
        )
    )


def _dev_choice(rows: list[dict]) -> int | None:
    """The docstring's rule over the GPTQ rows with an int4 head."""
    by_group = {
        128 if r["recipe"].endswith("int4_head") else int(r["recipe"].rsplit("_g", 1)[1]): r
        for r in rows
        if r["recipe"].startswith("int4_g128_gptq_int4_head")
    }
    if not by_group:
        return None
    best = min(r["dev_ppl"] for r in by_group.values())
    return max(g for g, r in by_group.items() if r["dev_ppl"] <= 1.01 * best)


if __name__ == "__main__":
    main()
