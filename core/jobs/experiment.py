"""The job behind "Run": build a configuration from a recipe, measure its
speed with the protocol, evaluate its quality against the original, and
hand back one RunRecord. Each stage yields its events so the window can
chart them live; cancel is honoured inside every stage. A sequence
classifier goes to ``core.jobs.classifier_experiment`` (batch-1 latency and
accuracy instead of decode speed and perplexity)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.measure.speed import BenchResult, BenchSettings, benchmark
from core.models.loading import LoadedModel
from core.models.size import measure_size
from core.passes.recipe import CompressedModel, Recipe, apply_recipe, validate
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress
from core.results.store import RunRecord
from core.runtime.registry import RUNTIMES

# Where a configuration runs: the runtime registry's one vocabulary.
BACKENDS = {key: runtime.label for key, runtime in RUNTIMES.items()}
TORCH_BACKENDS = ("torch", "torch-compile")  # the model's own weights, measured as they are

QUICK_BENCH = BenchSettings(prompt_tokens=64, new_tokens=32, warmup=1, min_repeats=3, min_time_s=2)


@dataclass(frozen=True)
class ExperimentSettings:
    bench: BenchSettings = QUICK_BENCH
    evaluate: bool = True
    perplexity: object = None  # a PerplexityProtocol; None: the quick protocol
    calibration_windows: int = 16
    calibration_length: int = 256
    # The evaluation text: a bundled source ("news", "pydoc"; None: news),
    # whose report split is scored and whose calibration split calibrates, or
    # a UTF-8 / JSONL file of the user's, scored whole (calibration then reads
    # the news calibration split: a file is never both fitted and scored).
    text_source: str | None = None
    # For a sequence classifier: a ClassifierExperimentSettings; None: its
    # quick defaults, with ``evaluate`` taken from above.
    classifier: object = None

    def perplexity_protocol(self):
        """The perplexity protocol on the evaluation text."""
        from core.evaluate.perplexity import QUICK_PROTOCOL, on_text

        return on_text(self.perplexity or QUICK_PROTOCOL, self.text_source)

    @property
    def calibration_source(self) -> str:
        """The bundled source whose calibration split passes calibrate on."""
        from core.data.texts import NEWS, SOURCES

        return self.text_source if self.text_source in SOURCES else NEWS


def build_compressed(
    original: LoadedModel,
    recipe: Recipe,
    settings: ExperimentSettings = ExperimentSettings(),
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> CompressedModel:
    """Apply ``recipe`` to a copy of ``original``, reading calibration text
    (never the report split) when a pass needs it."""

    if original.is_classifier:
        from core.jobs.classifier_experiment import build_compressed_classifier

        reviews = _classifier_settings(settings).calibration_reviews
        return build_compressed_classifier(original, recipe, reviews, progress, cancel)

    calibration = None
    if recipe.needs_calibration():
        calibration = read_calibration(original.tokenizer, settings, progress)
    return apply_recipe(original, recipe, calibration, progress, cancel)


def run_experiment(
    original: LoadedModel,
    recipe: Recipe,
    settings: ExperimentSettings = ExperimentSettings(),
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    backend: str = "torch",
) -> Iterator[object]:
    """Yield bench and evaluation events as they happen, then a RunRecord.

    ``backend`` (a key of BACKENDS) says where the built configuration runs;
    for ONNX Runtime it is exported (or found in the export cache) first.
    """
    cancel = cancel or CancelToken()
    validate(recipe)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if original.is_classifier:
        if backend != "torch":
            raise ValueError(
                f"{BACKENDS[backend]} runs causal language models here; "
                "a classifier runs on PyTorch eager"
            )
        from core.jobs.classifier_experiment import run_classifier_experiment

        yield from run_classifier_experiment(
            original, recipe, _classifier_settings(settings), progress, cancel
        )
        return
    candidate, notes = original, []
    if recipe.passes:
        compressed = build_compressed(original, recipe, settings, progress, cancel)
        candidate, notes = compressed.loaded, compressed.notes
    yield from measure_configuration(
        original, candidate, recipe, notes, settings, progress, cancel, backend
    )


def measure_configuration(
    original: LoadedModel,
    candidate: LoadedModel,
    recipe: Recipe,
    notes: list[str],
    settings: ExperimentSettings = ExperimentSettings(),
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    backend: str = "torch",
    label: str | None = None,
    artifact: dict | None = None,
) -> Iterator[object]:
    """Benchmark and evaluate ``candidate`` (already built: by a recipe, or a
    distilled student) against ``original``; yield events, then a RunRecord
    named ``label`` (default: the recipe's name)."""
    from core.evaluate.fidelity import FidelityResult, evaluate_fidelity
    from core.evaluate.health import broken_cause
    from core.evaluate.perplexity import (
        PerplexityResult,
        evaluate_perplexity,
        perplexity_windows,
    )

    if original.is_classifier:
        raise ValueError("a classifier is measured by run_experiment (its own protocol)")
    cancel = cancel or CancelToken()
    label = label or recipe.name
    needed = settings.bench.prompt_tokens + settings.bench.new_tokens
    from core.jobs.on_runtime import prepare

    prepared = prepare(candidate, backend, needed, progress, cancel)
    candidate, notes = prepared.loaded, [*notes, *prepared.notes]

    progress(Progress("Benchmarking", None))
    bench = None
    for event in benchmark(candidate, settings.bench, cancel):
        if isinstance(event, BenchResult):
            bench = event
        yield event

    ppl = fidelity = None
    if settings.evaluate:
        protocol = settings.perplexity_protocol()
        progress(Progress("Perplexity", None))
        windows = perplexity_windows(original.tokenizer, protocol)
        for event in evaluate_perplexity(
            candidate.model, original.tokenizer, protocol, cancel, windows
        ):
            if isinstance(event, PerplexityResult):
                ppl = event
            yield event
        if candidate.model is not original.model:  # else agreement is 1 by definition
            progress(Progress("Fidelity to the original", None))
            for event in evaluate_fidelity(
                original.model, candidate.model, original.tokenizer, windows[:4], cancel
            ):
                if isinstance(event, FidelityResult):
                    fidelity = event
                yield event

    if backend in TORCH_BACKENDS:
        size = measure_size(candidate.model)
        total, by_component = size.total_bytes, size.by_component
    else:  # the graph's stored weights (an untied head counts twice: it is stored twice)
        total = candidate.description.bytes_in_memory
        by_component = {"onnx weights": total}
    # The original agrees with itself by definition (not measured again).
    top1 = fidelity.top1_agreement if fidelity else (1.0 if ppl else None)
    ppl_ratio = fidelity.ppl_ratio if fidelity else (1.0 if ppl else None)
    yield RunRecord(
        model=original.source,
        recipe=recipe.to_dict(),
        recipe_name=label if backend == "torch" else f"{label} [{BACKENDS[backend]}]",
        backend=backend,
        bytes=total,
        bytes_by_component=by_component,
        prefill_ms=bench.prefill_ms.median,
        decode_ms_per_token=bench.decode_ms_per_token.median,
        tokens_per_s=bench.tokens_per_s,
        ppl=ppl.ppl if ppl else None,
        ppl_ci95=ppl.ci95_halfwidth if ppl else None,
        ppl_ci95_low=ppl.ci95_low if ppl else None,
        ppl_ci95_high=ppl.ci95_high if ppl else None,
        top1_agreement=top1,
        mean_kl=fidelity.mean_kl if fidelity else (0.0 if ppl else None),
        ppl_ratio=ppl_ratio,
        broken=broken_cause(
            top1, ppl_ratio, recipe.to_dict(), backend, original.description.model_type
        ),
        device=bench.environment.device,
        threads=bench.environment.threads,
        bench_protocol=bench.protocol,
        eval_protocol=ppl.protocol if ppl else "",
        machine_load=bench.machine_load.to_dict() if bench.machine_load else {},
        machine_busy=bench.machine_busy,
        notes=notes,
        artifact={**prepared.artifact, **(artifact or {})},
    )


def _classifier_settings(settings: ExperimentSettings):
    from core.jobs.classifier_experiment import ClassifierExperimentSettings

    return settings.classifier or ClassifierExperimentSettings(evaluate=settings.evaluate)


def read_calibration(tokenizer, settings: ExperimentSettings, progress: ProgressSink):
    """The calibration windows ``settings`` ask for (never the report split)."""
    from core.passes.calibration import calibration_windows

    progress(Progress("Reading calibration text", None))
    return calibration_windows(
        tokenizer,
        settings.calibration_windows,
        settings.calibration_length,
        settings.calibration_source,
    )


def on_backend(
    candidate: LoadedModel,
    backend: str,
    tokens: int,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> tuple[LoadedModel, list[str]]:
    """``candidate`` ready to run on ``backend`` (core.runtime.registry), with
    the notes a result on it should carry."""
    from core.jobs.on_runtime import prepare

    prepared = prepare(candidate, backend, tokens, progress, cancel)
    return prepared.loaded, list(prepared.notes)
