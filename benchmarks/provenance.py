"""What an export hands over is what its run measured, for every kind of run.

For each run kind (a recipe on PyTorch eager, the same on PyTorch compiled,
on ONNX Runtime fp32 and int8, a distilled student, a sequence classifier)
the run job measures it, the export job exports it, the export is loaded
fresh (the Hugging Face folder, or the ONNX graph the run was timed on), and
its quality is measured again on the run's own protocol. The relative
difference between the two numbers is what this prints.

    .venv/bin/python benchmarks/provenance.py [--model default] [--classifier demo-classifier-fast]

Quality only: nothing here is timed, so other load does not change it.
Last line JSON: {"kinds_checked", "max_rel_diff", "per_kind": {...}}
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from core.distill.settings import DistillSettings
from core.distill.student import StudentShape
from core.evaluate.perplexity import QUICK_PROTOCOL
from core.jobs.distill import DistillRequest, distill_student
from core.jobs.experiment import ExperimentSettings
from core.jobs.export import ExportRequest, export
from core.jobs.run import RunRequest, run
from core.measure.speed import BenchSettings
from core.models.loading import load_model
from core.passes.recipe import Recipe
from core.results.store import RunRecord
from core.runtime.device import set_threads

# Speed is not what is checked: one short timed run per configuration.
BENCH = BenchSettings(prompt_tokens=16, new_tokens=4, warmup=1, min_repeats=1, min_time_s=0)
INT8 = {"format": 1, "passes": [{"pass": "int8_weight_only", "version": 1}]}


def _record(events) -> RunRecord:
    return [e for e in events if isinstance(e, RunRecord)][-1]


def _remeasure_lm(folder: Path, original, settings) -> float:
    """Quick perplexity of an exported folder, loaded fresh, on the run's protocol."""
    from core.evaluate.perplexity import compute_perplexity, perplexity_windows

    loaded = load_model(str(folder), device="cpu")
    protocol = settings.perplexity or QUICK_PROTOCOL
    windows = perplexity_windows(original.tokenizer, protocol)
    return compute_perplexity(loaded.model, original.tokenizer, protocol, windows=windows).ppl


def _remeasure_classifier(folder: Path, settings) -> float:
    from core.evaluate.classifier_accuracy import ClassifierProtocol, evaluate_classifier

    loaded = load_model(str(folder), device="cpu")
    protocol = (settings.classifier and settings.classifier.accuracy) or ClassifierProtocol()
    *_, result = evaluate_classifier(loaded.model, loaded.tokenizer, protocol)
    return result.accuracy


def _check(kind, record, folder, measured_again, work) -> dict:
    key = "ppl" if record.metric("ppl") is not None else "accuracy"
    before = record.metric(key)
    rel = abs(measured_again - before) / abs(before)
    print(
        f"{kind:<18} {record.recipe_name[:44]:<44} {key} run {before:.6g}  export "
        f"{measured_again:.6g}  rel diff {rel:.2e}  ({folder.relative_to(work)})",
        flush=True,
    )
    return {"run_id": record.run_id, key: before, f"{key}_export": measured_again, "rel": rel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--classifier", default="demo-classifier-fast")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--distil-steps", type=int, default=6)
    parser.add_argument("--drop-layers", type=int, default=4, help="the student's dropped layers")
    parser.add_argument("--windows", type=int, default=4, help="quick perplexity windows")
    parser.add_argument("--context", type=int, default=512, help="window length (tokens)")
    args = parser.parse_args()
    set_threads(args.threads)

    original = load_model(args.model, device="cpu")
    protocol = replace(
        QUICK_PROTOCOL,
        quick_windows=args.windows,
        context_tokens=args.context,
        stride=args.context // 2,
    )
    settings = ExperimentSettings(bench=BENCH, perplexity=protocol)
    work = Path(tempfile.mkdtemp(prefix="provenance-"))
    results: dict[str, dict] = {}
    int8 = Recipe.from_dict(INT8)

    for kind, runtime, recipe, sub in (
        ("eager recipe", "torch", int8, None),
        ("compiled", "torch-compile", int8, None),
        ("ORT fp32", "ort", Recipe(), "onnx"),
        ("ORT int8", "ort-int8", Recipe(), "onnx-int8"),
    ):
        record = _record(run(RunRequest(original, recipe, runtime, settings, args.threads)))
        out = work / kind.replace(" ", "-")
        list(export(ExportRequest(original, out, ("hf", "report"), record)))
        folder = out / sub if sub else out
        again = _remeasure_lm(folder, original, settings)
        results[kind] = _check(kind, record, folder, again, work)

    distil = DistillSettings(steps=args.distil_steps, eval_every=None, checkpoint_every=0)
    shape = StudentShape(drop_layers=args.drop_layers)
    store = work / "store"
    request = DistillRequest(original, shape, store, distil, settings, threads=args.threads)
    record = _record(distill_student(request))
    out = work / "student"
    list(export(ExportRequest(original, out, ("hf", "report"), record, store_dir=store)))
    kind = "distilled student"
    results[kind] = _check(kind, record, out, _remeasure_lm(out, original, settings), work)

    from core.jobs.tasks.classifier import ClassifierExperimentSettings

    classifier = load_model(args.classifier, device="cpu")
    clf_settings = ExperimentSettings(classifier=ClassifierExperimentSettings())
    record = _record(run(RunRequest(classifier, int8, "torch", clf_settings, args.threads)))
    out = work / "classifier"
    list(export(ExportRequest(classifier, out, ("hf", "report"), record)))
    again = _remeasure_classifier(out, clf_settings)
    results["classifier"] = _check("classifier", record, out, again, work)

    summary = {
        "model": args.model,
        "classifier": args.classifier,
        "kinds_checked": len(results),
        "max_rel_diff": max(r["rel"] for r in results.values()),
        "per_kind": results,
    }
    shutil.rmtree(work)  # our own temporary exports, nothing else
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
