"""The "Run" job for a sequence classifier: build the configuration, time
it with the encoder protocol (``core.measure.classifier_speed``), score its
sentiment accuracy and its agreement with the original
(``core.evaluate.classifier_accuracy``), and hand back one RunRecord.
``core.jobs.experiment.run_experiment`` sends classifiers here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.measure.classifier_speed import (
    ClassifierBenchResult,
    ClassifierBenchSettings,
    benchmark_classifier,
)
from core.models.loading import LoadedModel
from core.models.size import measure_size
from core.passes.recipe import CompressedModel, Recipe, apply_recipe, validate
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress
from core.results.store import RunRecord

QUICK_CLASSIFIER_BENCH = ClassifierBenchSettings(warmup=3, min_repeats=20, min_time_s=2.0)


@dataclass(frozen=True)
class ClassifierExperimentSettings:
    bench: ClassifierBenchSettings = QUICK_CLASSIFIER_BENCH
    evaluate: bool = True
    accuracy: object = None  # a ClassifierProtocol; None: the quick protocol
    calibration_reviews: int = 128  # from the sentiment train split


def build_compressed_classifier(
    original: LoadedModel,
    recipe: Recipe,
    calibration_reviews: int = 128,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> CompressedModel:
    """Apply ``recipe``; calibrating passes see training-split reviews."""
    from core.passes.calibration import classifier_calibration

    calibration = None
    if recipe.needs_calibration():
        progress(Progress("Reading calibration reviews (train split)", None))
        calibration = classifier_calibration(original.tokenizer, calibration_reviews)
    return apply_recipe(original, recipe, calibration, progress, cancel)


def run_classifier_experiment(
    original: LoadedModel,
    recipe: Recipe,
    settings: ClassifierExperimentSettings = ClassifierExperimentSettings(),
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield timing and accuracy events as they happen, then a RunRecord."""
    from core.evaluate.classifier_accuracy import (
        QUICK_CLASSIFIER,
        ClassifierAccuracy,
        evaluate_classifier,
    )
    from core.evaluate.health import broken_cause

    cancel = cancel or CancelToken()
    validate(recipe)
    candidate, notes = original, []
    if recipe.passes:
        compressed = build_compressed_classifier(
            original, recipe, settings.calibration_reviews, progress, cancel
        )
        candidate, notes = compressed.loaded, compressed.notes

    progress(Progress("Benchmarking (batch-1 classification)", None))
    bench = None
    for event in benchmark_classifier(candidate, settings.bench, cancel):
        if isinstance(event, ClassifierBenchResult):
            bench = event
        yield event

    accuracy = None
    protocol = settings.accuracy or QUICK_CLASSIFIER
    if settings.evaluate:
        progress(Progress("Sentiment accuracy", None))
        reference = original.model if recipe.passes else None
        for event in evaluate_classifier(
            candidate.model, original.tokenizer, protocol, cancel, reference
        ):
            if isinstance(event, ClassifierAccuracy):
                accuracy = event
            yield event

    size = measure_size(candidate.model)
    # The original agrees with itself by definition (not measured again).
    agreement = (accuracy.agreement if recipe.passes else 1.0) if accuracy else None
    yield RunRecord(
        model=original.source,
        recipe=recipe.to_dict(),
        recipe_name=recipe.name,
        bytes=size.total_bytes,
        bytes_by_component=size.by_component,
        prefill_ms=None,
        decode_ms_per_token=None,
        tokens_per_s=None,
        ppl=None,
        ppl_ci95=None,
        top1_agreement=None,
        mean_kl=None,
        device=bench.environment.device,
        threads=bench.environment.threads,
        bench_protocol=bench.protocol,
        eval_protocol=accuracy.protocol if accuracy else "",
        machine_load=bench.machine_load.to_dict() if bench.machine_load else {},
        machine_busy=bench.machine_busy,
        notes=notes,
        task=original.task,
        latency_ms=bench.latency_ms.median,
        latency_ms_p10=bench.latency_ms.p10,
        latency_ms_p90=bench.latency_ms.p90,
        examples_per_s=bench.examples_per_s,
        accuracy=accuracy.accuracy if accuracy else None,
        accuracy_ci95_low=accuracy.ci95_low if accuracy else None,
        accuracy_ci95_high=accuracy.ci95_high if accuracy else None,
        examples=accuracy.examples if accuracy else None,
        agreement=agreement,
        broken=broken_cause(
            agreement,
            None,  # no perplexity for a classifier: label agreement is the analogue
            recipe.to_dict(),
            model_type=original.description.model_type,
            agreement_name="label agreement with the original",
        ),
    )
