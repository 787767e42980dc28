"""The sequence classifier: built with reviews of the sentiment train split
as calibration, timed by the encoder protocol (``core.measure.classifier_speed``:
batch-1 latency of one fixed input), scored by sentiment accuracy and by
label agreement with the original (``core.evaluate.classifier_accuracy``).
It runs on PyTorch eager only (core.runtime.registry)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

from core.measure.classifier_speed import ClassifierBenchSettings
from core.models.source_identity import identity
from core.progress import Progress
from core.results.metrics import SEQUENCE_CLASSIFICATION, ClassifierMetrics

QUICK_CLASSIFIER_BENCH = ClassifierBenchSettings(warmup=3, min_repeats=20, min_time_s=2.0)


@dataclass(frozen=True)
class ClassifierExperimentSettings:
    bench: ClassifierBenchSettings = QUICK_CLASSIFIER_BENCH
    evaluate: bool = True
    accuracy: object = None  # a ClassifierProtocol; None: the quick protocol
    calibration_reviews: int = 128  # from the sentiment train split


class ClassifierTask:
    name = SEQUENCE_CLASSIFICATION
    metrics = ClassifierMetrics
    kind = "classifier"  # how messages name it
    compared_by = "agreement"  # what comparing it with a reference measures

    def check(self, original, settings) -> None:
        """Nothing: a classifier's inputs are cut to its context as they are read."""

    def build(self, original, recipe, settings, progress, cancel):
        from core.passes.calibration import classifier_calibration
        from core.passes.recipe import apply_recipe

        calibration = None
        if recipe.needs_calibration():
            progress(Progress("Reading calibration reviews (train split)", None))
            reviews = own_settings(settings).calibration_reviews
            calibration = classifier_calibration(original.tokenizer, reviews)
        return apply_recipe(original, recipe, calibration, progress, cancel)

    def measure(
        self,
        original,
        candidate,
        recipe,
        notes,
        settings,
        progress,
        cancel,
        runtime,
        label,
        artifact,
    ) -> Iterator[object]:
        from core.evaluate.classifier_accuracy import (
            QUICK_CLASSIFIER,
            ClassifierAccuracy,
            evaluate_classifier,
        )
        from core.evaluate.health import broken_cause
        from core.jobs.on_runtime import prepare
        from core.measure.classifier_speed import ClassifierBenchResult, benchmark_classifier
        from core.models.finite_weights import ORIGINAL_NOT_NUMBERS
        from core.models.size import measure_size
        from core.results.store import RunRecord
        from core.runtime.registry import run_title

        mine = own_settings(settings)
        prepared = prepare(candidate, runtime, 0, progress, cancel)
        candidate, notes = prepared.loaded, [*notes, *prepared.notes]

        progress(Progress("Benchmarking (batch-1 classification)", None))
        bench = None
        for event in benchmark_classifier(candidate, mine.bench, cancel):
            if isinstance(event, ClassifierBenchResult):
                bench = event
            yield event

        accuracy = None
        if mine.evaluate:
            progress(Progress("Sentiment accuracy", None))
            reference = original.model if candidate.model is not original.model else None
            for event in evaluate_classifier(
                candidate.model,
                original.tokenizer,
                mine.accuracy or QUICK_CLASSIFIER,
                cancel,
                reference,
            ):
                if isinstance(event, ClassifierAccuracy):
                    accuracy = event
                yield event

        size = measure_size(candidate.model)
        # The original agrees with itself by definition (not measured again).
        same = candidate.model is original.model
        agreement = (1.0 if same else accuracy.agreement) if accuracy else None
        metrics = ClassifierMetrics(
            latency_ms=bench.latency_ms.median,
            latency_ms_p10=bench.latency_ms.p10,
            latency_ms_p90=bench.latency_ms.p90,
            examples_per_s=bench.examples_per_s,
            accuracy=accuracy.accuracy if accuracy else None,
            accuracy_ci95_low=accuracy.ci95_low if accuracy else None,
            accuracy_ci95_high=accuracy.ci95_high if accuracy else None,
            examples=accuracy.examples if accuracy else None,
            agreement=agreement,
        )
        yield RunRecord(
            model=original.source,
            recipe=recipe.to_dict(),
            recipe_name=run_title(label, runtime),
            backend=runtime,
            bytes=size.total_bytes,
            bytes_by_component=size.by_component,
            metrics=metrics,
            device=bench.environment.device,
            threads=bench.environment.threads,
            bench_protocol=bench.protocol,
            eval_protocol=accuracy.protocol if accuracy else "",
            machine_load=bench.machine_load.to_dict() if bench.machine_load else {},
            machine_busy=bench.machine_busy,
            notes=notes,
            broken=broken_cause(
                agreement,
                None,  # no perplexity for a classifier: label agreement is the analogue
                recipe.to_dict(),
                model_type=original.description.model_type,
                agreement_name="label agreement with the original",
                cause=ORIGINAL_NOT_NUMBERS if original.description.non_finite_weights else "",
                layers=original.description.layers,
            ),
            artifact={**prepared.artifact, **(artifact or {}), **identity(original)},
        )

    def bench(self, request, cancel) -> Iterator[object]:
        from core.measure.classifier_speed import benchmark_classifier

        settings = ClassifierBenchSettings(
            warmup=request.warmup,
            min_repeats=request.min_repeats,
            min_time_s=request.min_time_s,
            max_repeats=max(request.max_repeats, request.min_repeats),
        )
        yield from benchmark_classifier(request.loaded, settings, cancel)

    def evaluate(self, request, progress, cancel) -> Iterator[object]:
        """Sentiment accuracy (and agreement with a reference classifier)."""
        from core.evaluate.classifier_accuracy import ClassifierProtocol, evaluate_classifier
        from core.evaluate.zero_shot import AccuracyPartial
        from core.jobs.evaluate import EvaluationReport, measured_on, reference_for

        loaded, reference = request.loaded, None
        if request.reference is not None:
            reference = reference_for(request, self, progress, cancel)
        result = None
        protocol = ClassifierProtocol(mode=request.protocol.mode)
        for event in evaluate_classifier(
            loaded.model, loaded.tokenizer, protocol, cancel, reference and reference.model
        ):
            result = event if not isinstance(event, AccuracyPartial) else result
            yield event
        report = {
            "model": request.name,
            "task": self.name,
            "accuracy": asdict(result),
            "measured_on": measured_on(loaded),
        }
        if reference is not None:
            report["reference"] = request.reference
        yield EvaluationReport(report)


def own_settings(settings) -> ClassifierExperimentSettings:
    """The classifier's part of an ExperimentSettings (its quick defaults,
    with ``evaluate`` taken from the experiment, when none is given)."""
    return settings.classifier or ClassifierExperimentSettings(evaluate=settings.evaluate)


CLASSIFIER_TASK = ClassifierTask()
