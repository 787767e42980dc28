"""The int4 sensitivity map of the default model, timed, and checked against
a direct leave-one-out measurement (issue 15, item 1).

1. The Sensitivity job (core/jobs/sensitivity.py) with its defaults: int4
   g128 RTN on one layer at a time, 4 dev-split windows, KL over the
   original's top-256 next tokens. Timed end to end (model load included,
   and apart); no store, so every cell is measured.
2. Leave one out, for three layers: the most, the median and the least
   sensitive by the map. Each time, EVERY layer is int4 g128 RTN except
   that one, built with apply_recipe and scored with the plain full-vocabulary
   fidelity (core.evaluate.fidelity) on the same dev windows; also uniform
   int4 (all layers). A layer's gain is how much leaving it out lowers the
   KL (and the perplexity ratio) of uniform int4. The map is right when the
   gains rank the three as it does: Spearman and Kendall over the three.
3. For the same three cells, the map's top-256 KL against the full KL (what
   caching only the top k costs).

Timing is meaningful only on a quiet machine: the load average is printed
before and after, and beside the wall time the process's CPU time. On a
shared machine the CPU time is the better estimate: with --threads 1 it is
about what the map takes alone on one core (an upper bound for two
threads on a quiet machine).

    .venv/bin/python benchmarks/sensitivity_check.py [--threads N] [--windows 4]

Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = _ranks(a), _ranks(b)
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / (n * (n * n - 1))


def kendall(a: list[float], b: list[float]) -> float:
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    agree = sum(1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 for i, j in pairs)
    return agree / len(pairs)


def _ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0] * len(values)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks


def all_but(layer: int, layers: int) -> str:
    return ",".join(str(i) for i in range(layers) if i != layer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--windows", type=int, default=4, help="dev windows a cell (job default)")
    args = parser.parse_args()

    import torch

    from core.evaluate.fidelity import fidelity_to_logits, reference_logits
    from core.evaluate.perplexity import PerplexityProtocol, perplexity_windows
    from core.jobs.sensitivity import (
        CONTEXT_TOKENS,
        SensitivityCell,
        SensitivityMap,
        SensitivityRequest,
        sensitivity,
    )
    from core.models.loading import load_model
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe, apply_recipe
    from core.runtime.device import set_threads

    threads = set_threads(args.threads)
    load_before = os.getloadavg()
    start, cpu_start = time.perf_counter(), time.process_time()
    original = load_model("default", device="cpu")
    loaded_s = time.perf_counter() - start
    layers = original.model.config.num_hidden_layers

    probe = R["int4_weight_only"](128, "rtn")
    smap = None
    for event in sensitivity(SensitivityRequest(original, probe, windows=args.windows)):
        if isinstance(event, SensitivityCell):
            print(
                f"layer {event.layer:2d}: KL {event.mean_kl:.5f}, ppl x{event.ppl_ratio:.4f}  "
                f"({time.perf_counter() - start:.0f} s, "
                f"CPU {time.process_time() - cpu_start:.0f} s)",
                flush=True,
            )
        elif isinstance(event, SensitivityMap):
            smap = event
    end_to_end_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    load_after = os.getloadavg()
    # Before the run the load is other programs' (after it, ours too).
    shared = "a shared machine: not a clean timing" if load_before[0] > 0.5 else "quiet"
    print(
        f"map: {smap.seconds:.0f} s in the job, {end_to_end_s:.0f} s with the model load "
        f"({end_to_end_s / 60:.2f} min; target <= 10); {threads} threads; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after ({shared}); process CPU "
        f"time {cpu_s:.0f} s ({cpu_s / 60:.2f} min)",
        flush=True,
    )
    print(f"protocol: {smap.protocol}", flush=True)

    by_kl = sorted(smap.cells, key=lambda c: c.mean_kl, reverse=True)
    chosen = [by_kl[0], by_kl[len(by_kl) // 2], by_kl[-1]]  # most, median, least

    # Leave one out, scored plainly on the same dev windows with the full vocabulary.
    protocol = PerplexityProtocol(
        context_tokens=CONTEXT_TOKENS, stride=CONTEXT_TOKENS // 2, split="dev",
        quick_windows=args.windows,
    )  # fmt: skip
    windows = perplexity_windows(original.tokenizer, protocol)[: args.windows]
    reference = reference_logits(original.model, windows)

    def score(recipe) -> tuple[float, float]:
        model = apply_recipe(original, recipe).loaded.model
        scores = [
            fidelity_to_logits(ref, model, window)
            for ref, window in zip(reference, windows, strict=True)
        ]
        kl = sum(s.kl for s in scores) / len(scores)
        return kl, math.exp(sum(s.nll_delta for s in scores) / len(scores))

    uniform_kl, uniform_ratio = score(Recipe((probe,)))
    print(f"uniform int4 g128 RTN: KL {uniform_kl:.5f}, ppl x{uniform_ratio:.4f}", flush=True)
    rows = []
    for cell in chosen:
        kl, ratio = score(
            Recipe((R["int4_weight_only"](128, "rtn", layers=all_but(cell.layer, layers)),))
        )
        alone_kl, _ = score(Recipe((R["int4_weight_only"](128, "rtn", layers=str(cell.layer)),)))
        row = {
            "layer": cell.layer,
            "map_kl": round(cell.mean_kl, 6),
            "map_ppl_ratio": round(cell.ppl_ratio, 5),
            "map_rank": by_kl.index(cell) + 1,
            "full_kl_alone": round(alone_kl, 6),
            "top_k_fraction_of_full_kl": round(cell.mean_kl / alone_kl, 4),
            "loo_kl": round(kl, 6),
            "loo_ppl_ratio": round(ratio, 5),
            "kl_gain": round(uniform_kl - kl, 6),
            "ppl_gain_pct": round((uniform_ratio - ratio) * 100, 4),
        }
        rows.append(row)
        print(
            f"leave layer {cell.layer:2d} out (map rank {row['map_rank']}): KL {kl:.5f} "
            f"(gain {row['kl_gain']:.5f}), ppl x{ratio:.4f} (gain {row['ppl_gain_pct']:.3f} "
            f"points); map KL {cell.mean_kl:.5f}, full KL of the cell {alone_kl:.5f} "
            f"(top-k holds {row['top_k_fraction_of_full_kl']:.1%})",
            flush=True,
        )
    map_kl = [r["map_kl"] for r in rows]
    kl_gain = [r["kl_gain"] for r in rows]
    ppl_gain = [r["ppl_gain_pct"] for r in rows]
    agreement = {
        "spearman_kl_gain": spearman(map_kl, kl_gain),
        "kendall_kl_gain": kendall(map_kl, kl_gain),
        "spearman_ppl_gain": spearman(map_kl, ppl_gain),
        "kendall_ppl_gain": kendall(map_kl, ppl_gain),
    }
    print(
        "agreement of the map's ranking with leave-one-out (3 layers): "
        + ", ".join(f"{k} {v:+.2f}" for k, v in agreement.items()),
        flush=True,
    )
    print(
        json.dumps(
            {
                "map_minutes": round(end_to_end_s / 60, 2),
                "map_cpu_minutes": round(cpu_s / 60, 2),
                "map_job_s": round(smap.seconds, 1),
                "model_load_s": round(loaded_s, 1),
                "target_minutes": 10,
                "met": end_to_end_s <= 600,
                "threads": threads,
                "torch_threads": torch.get_num_threads(),
                "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
                "windows": args.windows,
                "protocol": smap.protocol,
                "cells": [
                    {
                        "layer": c.layer,
                        "kl": round(c.mean_kl, 6),
                        "ppl_ratio": round(c.ppl_ratio, 5),
                    }
                    for c in smap.cells
                ],
                "uniform": {"kl": round(uniform_kl, 6), "ppl_ratio": round(uniform_ratio, 5)},
                "leave_one_out": rows,
                "agreement": agreement,
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
