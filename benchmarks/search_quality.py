"""The Search job against the hand-made baseline (issue 15): on the default
model, limit "bytes <= 0.35x fp32", objective "smallest perplexity
increase", a 30-minute budget. Target: the best found has at most half the
perplexity increase of uniform int4 g128 GPTQ, at no more than 1.1x its
bytes.

1. The search runs with a fresh run store (nothing reused from earlier
   runs, so its time is its own) and the default protocols: proxies on the
   dev split, measurement on the quick protocol's report-split windows.
2. Uniform int4 g128 GPTQ is measured by the Run job with the same settings
   (or taken from the search's store, when the search measured it), outside
   the search's budget; both increases are against the original the search
   measured.

    .venv/bin/python benchmarks/search_quality.py [--threads N] [--budget-s 1800]
        [--ray auto|ADDRESS] [--workers N] [--store DIR] [--smoke-model PATH|tiny]

``--smoke-model``: a tiny model instead (``tiny``: a random tiny Llama
built on the spot), tiny protocols, for a quick check that it all runs; its
numbers mean nothing. Last line: JSON with best_bytes_ratio,
best_ppl_delta_pct, uniform_bytes_ratio, uniform_ppl_delta_pct,
candidates_measured, elapsed_s, best_recipe (and the target's verdict).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from core.cli.search import event_line
from core.jobs.experiment import ExperimentSettings
from core.jobs.run import RunRequest, run
from core.jobs.search import SearchRequest, search
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe
from core.results.store import ResultsStore, RunRecord
from core.search.events import ReferenceMeasured
from core.search.limits import Limits, ppl_increase_pct
from core.search.summary import SearchSummary

BYTES_RATIO_LIMIT = 0.35
TARGET_DELTA_RATIO = 0.5  # best increase <= half the uniform one
TARGET_BYTES_RATIO = 1.1  # at <= 1.1x its bytes


def smoke_settings() -> ExperimentSettings:
    from core.evaluate.perplexity import PerplexityProtocol
    from core.measure.speed import BenchSettings

    return ExperimentSettings(
        bench=BenchSettings(prompt_tokens=16, new_tokens=8, warmup=1, min_repeats=2, min_time_s=0),
        perplexity=PerplexityProtocol(
            context_tokens=64, stride=32, quick_windows=3, source="pydoc"
        ),
        calibration_windows=4,
        calibration_length=64,
        text_source="pydoc",
    )


def tiny_model(folder: Path) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.tiny_models import save_tiny_model

    return str(save_tiny_model("llama", folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=1800.0)
    parser.add_argument("--ray", default=None, help="score proxies on Ray (auto or an address)")
    parser.add_argument("--workers", type=int, default=None, help="local proxy processes")
    parser.add_argument("--store", type=Path, default=None, help="run store folder (default: new)")
    parser.add_argument("--smoke-model", default=None, help="a tiny model folder, or 'tiny'")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="search-quality-"))
    store = ResultsStore((args.store or scratch) / "runs.jsonl")
    settings = ExperimentSettings()
    source = "default"
    if args.smoke_model:
        source = tiny_model(scratch / "tiny") if args.smoke_model == "tiny" else args.smoke_model
        settings = smoke_settings()
    original = load_model(source, device="cpu")
    print(f"model {source}; store {store.path}", flush=True)

    request = SearchRequest(
        original,
        Limits(max_bytes_ratio=BYTES_RATIO_LIMIT),
        "ppl",
        args.budget_s,
        "torch",
        settings,
        args.threads,
        args.ray,
        args.workers,
        store_path=store.path,
    )
    summary, reference, start = SearchSummary(), None, time.perf_counter()
    for event in search(request, lambda p: None):
        if isinstance(event, RunRecord):
            store.append(event)
            continue
        summary.add(event)
        if isinstance(event, ReferenceMeasured):
            reference = event.record
        line = event_line(event)
        if line:
            print(f"{time.perf_counter() - start:7.1f} s  {line}", flush=True)
    account = summary.to_dict()
    best = summary.best

    uniform = Recipe((R["int4_weight_only"](128, "gptq"),))
    baseline = next(
        (r for r in reversed(store.load()) if r.recipe == uniform.to_dict()), None
    )  # measured by the search already: the same record
    if baseline is None:
        print("measuring uniform int4 g128 GPTQ (outside the search's budget)", flush=True)
        events = run(RunRequest(original, uniform, "torch", settings, args.threads))
        baseline = store.append(next(e for e in events if isinstance(e, RunRecord)))
    original_bytes = account["original_bytes"]
    uniform_delta = ppl_increase_pct(baseline, reference)
    uniform_ratio = baseline.bytes / original_bytes
    print(
        f"uniform int4 g128 GPTQ: {baseline.bytes / 1e6:.1f} MB ({uniform_ratio:.4f}x), "
        f"perplexity {baseline.metric('ppl'):.3f} ({uniform_delta:+.2f}%)"
    )
    result = {
        "best_bytes_ratio": None,
        "best_ppl_delta_pct": None,
        "uniform_bytes_ratio": round(uniform_ratio, 4),
        "uniform_ppl_delta_pct": round(uniform_delta, 3),
        "candidates_measured": account["counts"]["measured"] + account["counts"]["reused"],
        "elapsed_s": account["elapsed_s"],
        "best_recipe": None,
    }
    if best is None:
        print("the search found nothing within the limits: target NOT met")
    else:
        result |= {
            "best_bytes_ratio": round(best.bytes_ratio, 4),
            "best_ppl_delta_pct": round(best.ppl_increase_pct, 3),
            "best_recipe": best.record.recipe,
        }
        delta_ok = best.ppl_increase_pct <= TARGET_DELTA_RATIO * uniform_delta
        bytes_ok = best.record.bytes <= TARGET_BYTES_RATIO * baseline.bytes
        result["target_met"] = delta_ok and bytes_ok
        print(
            f"best: {best.label}: {best.record.bytes / 1e6:.1f} MB ({best.bytes_ratio:.4f}x), "
            f"perplexity {best.record.metric('ppl'):.3f} ({best.ppl_increase_pct:+.2f}%); "
            f"increase {best.ppl_increase_pct / uniform_delta if uniform_delta else 0:.3f}x the "
            f"uniform's (target <= {TARGET_DELTA_RATIO}), bytes "
            f"{best.record.bytes / baseline.bytes:.3f}x (target <= {TARGET_BYTES_RATIO}): "
            f"{'met' if result['target_met'] else 'NOT met'}"
        )
    print(f"protocol: {reference.eval_protocol}; proxies: {account['proxy']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
