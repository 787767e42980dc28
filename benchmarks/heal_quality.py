"""Width pruning with a short heal on the default model: 25% of the MLP
neurons (and, as a variant, 25% of the attention heads: the nearest
achievable is 1 of 3 query heads per group) removed, then healed by
distillation from the original (the heal pass) for a few time budgets.

Perplexity on the quick protocol's windows of the report split (default)
or, with ``--dev-choices``, of the dev split, where the heal's defaults
are chosen: the original, the pruned model, and the pruned model healed
for each budget. Each row says how many steps the budget allowed (they
depend on the machine and its load; the steps are recorded in the recipe,
so a rebuild replays them) and how much of the pruning's loss in
log-perplexity was recovered. Built as a Run builds it
(``build_compressed`` with the run's ExperimentSettings: pruning
calibrated on 16 windows of 256 tokens, heal trained on every 256-token
window of the calibration split, never dev or report). Sizes are measured:
a healed model keeps the pruned model's bytes.

Defaults chosen on dev (``--dev-choices``), rules fixed before the run:
- time budget: the smallest budget recovering at least half of the MLP
  variant's pruning loss in log-perplexity on dev; if none does, the one
  with the lowest dev perplexity;
- learning rate: 4e-4 (the Distil job's dev choice) against 1e-3 at that
  budget, MLP variant: the lower dev perplexity.
Measured on this 2-core VM shared with other work (load average ~7-8),
OMP_NUM_THREADS=1, so a step took 50-100 s and the times are shared ones
(benchmarks/results/heal_quality_dev_choices_cpu_2core.txt): dev ppl
original 32.05; 25% MLP neurons removed 65.78, healed 60 / 120 / 300 s
61.72 / 61.72 / 55.29 (1 / 1 / 4 steps); heads (1 of 3 per group) 111.25,
healed 73.45 / 73.45 / 69.81. No budget recovered half of the MLP loss, so
the default budget is the lowest perplexity's, 300 s; lr 4e-4 (55.29)
beat 1e-3 (60.75) there. Report split, 300 s (8-10 steps; the VM was less
busy; benchmarks/results/heal_quality_cpu_2core.txt): original 23.26; MLP
45.69 (+96.4%) -> 36.22 (+55.7%); heads 70.76 (+204.3%) -> 34.37 (+47.8%).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/heal_quality.py [--threads 1]
        [--dev-choices] [--budgets 60 120 300] [--variants mlp heads] [--lr 4e-4]
        [--smoke-model DIR]

Last line: {"split", "protocol", "threads", "original_ppl", "rows": [{"variant",
"budget_s", "lr", "steps_done", "planned_steps", "train_s", "ppl",
"ppl_ci95_low", "ppl_ci95_high", "increase_pct", "recovered_pct", "bytes"}],
"choice": {...} (with --dev-choices)}
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace

from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows
from core.jobs.experiment import ExperimentSettings, build_compressed
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe
from core.runtime.device import set_threads

VARIANTS = {"mlp": R["prune_mlp"](0.25), "heads": R["prune_heads"](0.25)}
MAX_STEPS = 10_000  # the time budget decides
LR_CANDIDATES = (4e-4, 1e-3)
RECOVERY_RULE = 50.0  # percent of the pruning's log-perplexity loss


def recovered(original: float, pruned: float, healed: float) -> float:
    """Share of the pruning's loss in log-perplexity won back by healing."""
    lost = math.log(pruned) - math.log(original)
    return 100 * (math.log(pruned) - math.log(healed)) / lost if lost > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dev-choices", action="store_true", help="score dev and choose")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 120.0, 300.0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--lr", type=float, default=R["heal"]().lr)
    parser.add_argument("--smoke-model", default=None, help="a tiny model folder (a check)")
    args = parser.parse_args()
    began = time.perf_counter()
    threads = set_threads(args.threads)
    split = "dev" if args.dev_choices else "report"
    protocol = replace(QUICK_PROTOCOL, split=split)
    settings = ExperimentSettings()
    if args.smoke_model:
        protocol = replace(protocol, source="pydoc", context_tokens=128, stride=64, quick_windows=3)
        settings = replace(
            settings, calibration_windows=4, calibration_length=64, text_source="pydoc"
        )
    original = load_model(args.smoke_model or "default", device="cpu")
    tokenizer = original.tokenizer
    windows = perplexity_windows(tokenizer, protocol)

    def score(model) -> dict:
        result = compute_perplexity(model, tokenizer, protocol, windows=windows)
        return {
            "ppl": round(result.ppl, 4),
            "ppl_ci95_low": None if result.ci95_low is None else round(result.ci95_low, 4),
            "ppl_ci95_high": None if result.ci95_high is None else round(result.ci95_high, 4),
        }

    base = score(original.model)["ppl"]
    print(f"{args.smoke_model or 'default model'}, fp32, {threads} threads; split {split}")
    print(f"perplexity: {protocol.describe()}")
    print(f"original: ppl {base:.3f}", flush=True)

    rows = []

    def row(variant: str, budget: float | None, lr: float | None, compressed, pruned_ppl) -> dict:
        scored = score(compressed.loaded.model)
        heal = compressed.artifact.get("heal", {})
        out = {
            "variant": variant,
            "budget_s": budget,
            "lr": lr,
            "steps_done": heal.get("steps_done", 0),
            "planned_steps": heal.get("planned_steps", 0),
            "train_s": heal.get("train_s", 0.0),
            **scored,
            "increase_pct": round((scored["ppl"] / base - 1) * 100, 2),
            "recovered_pct": None
            if pruned_ppl is None
            else round(recovered(base, pruned_ppl, scored["ppl"]), 1),
            "bytes": measure_size(compressed.loaded.model).total_bytes,
            "recipe": compressed.recipe.name,
        }
        rows.append(out)
        print(
            f"{variant} {'pruned' if budget is None else f'healed {budget:g} s, lr {lr:g}'}: "
            f"ppl {out['ppl']:.3f} ({out['increase_pct']:+.1f}%), {out['steps_done']} steps in "
            f"{out['train_s']:.0f} s, recovered {out['recovered_pct']}%, {out['bytes']} bytes "
            f"[{time.perf_counter() - began:.0f} s]",
            flush=True,
        )
        return out

    for variant in args.variants:
        pruning = VARIANTS[variant]
        pruned = row(
            variant, None, None, build_compressed(original, Recipe((pruning,)), settings), None
        )
        for budget in args.budgets:
            heal = R["heal"](seconds=budget, max_steps=MAX_STEPS, lr=args.lr)
            built = build_compressed(original, Recipe((pruning, heal)), settings)
            row(variant, budget, args.lr, built, pruned["ppl"])
            del built

    summary: dict = {
        "split": split,
        "protocol": protocol.describe(),
        "threads": threads,
        "original_ppl": base,
        "rows": rows,
    }
    if args.dev_choices and "mlp" in args.variants:
        summary["choice"] = choose(rows, args, original, settings, row)
    summary["seconds"] = round(time.perf_counter() - began)
    print(json.dumps(summary))


def choose(rows, args, original, settings, row) -> dict:
    """The rules in the module docstring, applied to the MLP variant's dev rows."""
    healed = [r for r in rows if r["variant"] == "mlp" and r["budget_s"] is not None]
    enough = [r for r in healed if r["recovered_pct"] >= RECOVERY_RULE]
    pick = (
        min(enough, key=lambda r: r["budget_s"]) if enough else min(healed, key=lambda r: r["ppl"])
    )
    budget = pick["budget_s"]
    pruned_ppl = next(r["ppl"] for r in rows if r["variant"] == "mlp" and r["budget_s"] is None)
    by_lr = {args.lr: pick}
    for lr in LR_CANDIDATES:
        if lr not in by_lr:
            heal = R["heal"](seconds=budget, max_steps=MAX_STEPS, lr=lr)
            built = build_compressed(original, Recipe((VARIANTS["mlp"], heal)), settings)
            by_lr[lr] = row("mlp", budget, lr, built, pruned_ppl)
    lr = min(by_lr, key=lambda k: by_lr[k]["ppl"])
    print(
        f"choice (dev): budget {budget:g} s ("
        + ("smallest recovering >= 50%" if enough else "none recovers 50%: lowest ppl")
        + f"), lr {lr:g} (dev ppl "
        + ", ".join(f"{k:g}: {v['ppl']:.3f}" for k, v in sorted(by_lr.items()))
        + ")"
    )
    return {
        "budget_s": budget,
        "budget_rule": "smallest >= 50% recovered" if enough else "lowest ppl",
        "lr": lr,
        "ppl_by_lr": {f"{k:g}": v["ppl"] for k, v in by_lr.items()},
    }


if __name__ == "__main__":
    main()
