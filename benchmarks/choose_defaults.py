"""Choose the defaults on the dev split: SmoothQuant alpha for W8A8 and the
distillation learning rate and batch, on the default model.

Nothing here reads the report split: every candidate is scored on the quick
protocol's windows of the dev split (``split="dev"``), so the numbers the
workbench reports (report split) are not the numbers its defaults were
tuned on. Calibration reads the calibration split, distillation the
training split, as in every run.

- W8A8 (``int8_dynamic``) with each SmoothQuant alpha, calibrated as a run
  in the window is (16 windows of 256 tokens), scored by quick perplexity on
  the dev windows and by KL / top-1 agreement to the fp32 model on the first
  4 of them (what a run measures). Chosen: the lowest KL.
- Distillation of the default student (8 of 30 layers dropped by Block
  Influence) for the short step budget (10 steps, 2 warm-up steps) at each
  learning rate x batch size, from the same pruned student, scored by quick
  perplexity on the dev windows. Recovery is in log-perplexity:
  (log pruned - log student) / (log pruned - log teacher). Chosen: the
  lowest dev perplexity.

Quality, not time, is measured, so a busy machine changes only how long it
takes (seconds are printed for orientation).

W8A8's int8 x int8 products go through an fp32 matmul here, not
``torch._int_mm``: on this CPU (AVX2, no AVX-512 VNNI) that kernel takes a
slow path (0.65 s for one 512x576 by 576x1536 product, 50x the fp32
matmul; a 512-token W8A8 forward takes 71 s on one thread), so the quick
protocol on six alphas would take hours. The operands are the very same
int8 values and the products are integers, exact in fp32 up to 2**24
(rounded by at most one part in 2**24 beyond), so the scores are the same
to float rounding; the script checks it on one window against the real
kernel and prints the largest logit difference.

    .venv/bin/python benchmarks/choose_defaults.py [--threads 2] [--alphas 0.3,0.5]
        [--lrs 1e-4,4e-4] [--batches 2,4] [--steps 10]

Last line: {"smooth_alpha": {"chosen", "candidates": [...]}, "distill": {...}, ...}
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from core.distill.events import DistillResult
from core.distill.settings import DistillSettings
from core.distill.student import StudentShape, build_student
from core.distill.train import distill
from core.evaluate.fidelity import compute_fidelity
from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows
from core.models.loading import load_model
from core.passes import REGISTRY
from core.passes.calibration import calibration_windows
from core.passes.recipe import Recipe, apply_recipe
from core.runtime.device import set_threads

DEV = replace(QUICK_PROTOCOL, split="dev")  # --smoke-model: on pydoc, shorter windows
FIDELITY_WINDOWS = 4  # as a run in the window measures fidelity


@contextmanager
def int8_products_in_fp32():
    """``torch._int_mm`` computed by an fp32 matmul of the same int8 operands (see above)."""
    real = torch._int_mm

    def fp32_int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.float() @ b.float()).round_().to(torch.int32)

    torch._int_mm = fp32_int_mm
    try:
        yield
    finally:
        torch._int_mm = real


@torch.inference_mode()
def check_fp32_products(model, window: torch.Tensor) -> float:
    """Largest |logit| difference between the real int8 kernel and the fp32 products."""
    ids = window.unsqueeze(0)
    real = model(input_ids=ids).logits
    with int8_products_in_fp32():
        emulated = model(input_ids=ids).logits
    return (real - emulated).abs().max().item()


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def log_recovery(teacher: float, pruned: float, student: float) -> float | None:
    gap = math.log(pruned) - math.log(teacher)
    return (math.log(pruned) - math.log(student)) / gap if gap > 0 else None


def sweep_alpha(teacher, windows, calibration, reference_ppl, alphas) -> dict:
    print(f"\nW8A8 (int8_dynamic) by SmoothQuant alpha; fp32 dev ppl {reference_ppl:.3f}")
    print(f"{'alpha':>5s} {'dev ppl':>8s} {'ratio':>7s} {'KL':>8s} {'top-1':>7s} {'s':>5s}")
    rows = []
    for alpha in alphas:
        began = time.perf_counter()
        recipe = Recipe((REGISTRY["int8_dynamic"](smooth_alpha=alpha),))
        candidate = apply_recipe(teacher, recipe, calibration).loaded.model
        with int8_products_in_fp32():
            ppl = compute_perplexity(candidate, teacher.tokenizer, DEV, windows=windows)
            fidelity = compute_fidelity(
                teacher.model, candidate, teacher.tokenizer, windows[:FIDELITY_WINDOWS]
            )
        if not rows:  # once: the fp32 products give the real kernel's logits
            check = check_fp32_products(candidate, windows[0])
            print(f"(fp32 products vs torch._int_mm on one window: max |logit diff| {check:.2e})")
        row = {
            "alpha": alpha,
            "dev_ppl": round(ppl.ppl, 4),
            "ppl_ratio_to_fp32": round(ppl.ppl / reference_ppl, 5),
            "mean_kl": round(fidelity.mean_kl, 5),
            "top1_agreement": round(fidelity.top1_agreement, 4),
            "seconds": round(time.perf_counter() - began, 1),
        }
        if len(rows) == 0:
            row["max_logit_diff_fp32_products_vs_int_mm"] = check
        rows.append(row)
        print(
            f"{alpha:5.2f} {row['dev_ppl']:8.3f} {row['ppl_ratio_to_fp32']:7.4f} "
            f"{row['mean_kl']:8.5f} {row['top1_agreement']:7.2%} {row['seconds']:5.0f}",
            flush=True,
        )
        del candidate
    best = min(rows, key=lambda r: (r["mean_kl"], r["dev_ppl"]))
    print(f"chosen alpha {best['alpha']:g} (lowest KL on the dev windows)")
    return {"chosen": best["alpha"], "rule": "lowest mean KL to fp32", "candidates": rows}


def sweep_distill(teacher, windows, calibration, teacher_ppl, args) -> dict:
    shape = StudentShape(args.drop_layers, 0.0)
    student = build_student(teacher, shape.recipe(), calibration)
    pruned_ppl = compute_perplexity(
        student.loaded.model, teacher.tokenizer, DEV, windows=windows
    ).ppl
    print(
        f"\ndistillation of {student.recipe.name} ({args.steps} steps, 2 warm-up); "
        f"dev ppl teacher {teacher_ppl:.3f}, pruned {pruned_ppl:.3f}"
    )
    print(f"{'lr':>7s} {'batch':>5s} {'dev ppl':>8s} {'recovered':>9s} {'loss':>13s} {'s':>5s}")
    rows = []
    for batch in args.batches:
        for lr in args.lrs:
            began = time.perf_counter()
            trained = copy.deepcopy(student)
            settings = DistillSettings(
                steps=args.steps,
                warmup_steps=2,
                learning_rate=lr,
                batch_size=batch,
                eval_every=None,
                text_source=DEV.source,
            )
            result = None
            for event in distill(teacher, trained, settings):
                result = event if isinstance(event, DistillResult) else result
            ppl = compute_perplexity(
                trained.loaded.model, teacher.tokenizer, DEV, windows=windows
            ).ppl
            recovered = log_recovery(teacher_ppl, pruned_ppl, ppl)
            row = {
                "lr": lr,
                "batch": batch,
                "dev_ppl": round(ppl, 4),
                "log_recovered": None if recovered is None else round(recovered, 4),
                "first_loss": round(result.first_loss, 4),
                "last_loss": round(result.last_loss, 4),
                "train_s": round(result.train_s, 1),
                "seconds": round(time.perf_counter() - began, 1),
            }
            rows.append(row)
            print(
                f"{lr:7.0e} {batch:5d} {ppl:8.3f} "
                f"{'n/a' if recovered is None else f'{recovered:.1%}':>9s} "
                f"{result.first_loss:6.3f}->{result.last_loss:5.3f} {row['seconds']:5.0f}",
                flush=True,
            )
            del trained
    best = min(rows, key=lambda r: r["dev_ppl"])
    print(f"chosen lr {best['lr']:g}, batch {best['batch']} (lowest dev perplexity)")
    return {
        "chosen": {"learning_rate": best["lr"], "batch_size": best["batch"]},
        "rule": "lowest dev perplexity after the same step budget",
        "student": student.recipe.to_dict()["passes"],
        "teacher_dev_ppl": round(teacher_ppl, 4),
        "pruned_dev_ppl": round(pruned_ppl, 4),
        "steps": args.steps,
        "candidates": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--alphas", type=floats, default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--lrs", type=floats, default=[1e-4, 4e-4, 1e-3])
    parser.add_argument("--batches", type=ints, default=[2, 4])
    parser.add_argument("--steps", type=int, default=10, help="distillation steps per point")
    parser.add_argument("--drop-layers", type=int, default=8, help="of 30 (default 8)")
    parser.add_argument("--skip-alpha", action="store_true")
    parser.add_argument("--skip-distill", action="store_true")
    parser.add_argument("--smoke-model", default=None, help="a tiny model folder (a check)")
    args = parser.parse_args()
    global DEV
    if args.smoke_model:
        DEV = replace(DEV, source="pydoc", context_tokens=128, stride=64, quick_windows=3)
    began = time.perf_counter()
    threads = set_threads(args.threads)
    teacher = load_model(args.smoke_model or "default", device="cpu")
    windows = perplexity_windows(teacher.tokenizer, DEV)
    calibration = calibration_windows(teacher.tokenizer, source=DEV.source)
    fold = Path(__file__).parents[1] / "core" / "passes" / "smooth_quant.py"
    print(f"{args.smoke_model or 'default model'}, fp32, {threads} threads; ", end="")
    print("smooth_quant.py sha256 ", end="")
    print(hashlib.sha256(fold.read_bytes()).hexdigest()[:12])
    reference = compute_perplexity(teacher.model, teacher.tokenizer, DEV, windows=windows)
    print(f"perplexity: {reference.protocol}", flush=True)
    summary: dict = {"threads": threads, "protocol": reference.protocol}
    if not args.skip_alpha:
        summary["smooth_alpha"] = sweep_alpha(
            teacher, windows, calibration, reference.ppl, args.alphas
        )
    if not args.skip_distill:
        summary["distill"] = sweep_distill(teacher, windows, calibration, reference.ppl, args)
    summary["seconds"] = round(time.perf_counter() - began)
    print(f"total {summary['seconds']} s")
    print(json.dumps(summary))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
