"""The job behind "Run": build a configuration from a recipe, measure its
speed with the protocol, evaluate its quality against the original, and
hand back one RunRecord. Each stage yields its events so the window can
chart them live; cancel is honoured inside every stage. How a model is
built, timed and scored is its kind's (``core.jobs.tasks``): decode speed
and perplexity for a causal LM, batch-1 latency and accuracy for a
classifier."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.jobs.on_runtime import check_exportable
from core.jobs.tasks import task_for
from core.measure.speed import BenchSettings
from core.models.loading import LoadedModel
from core.passes.recipe import CompressedModel, Recipe, validate
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress
from core.runtime.registry import RUNTIMES, check_supports

# Where a configuration runs: the runtime registry's one vocabulary.
BACKENDS = {key: runtime.label for key, runtime in RUNTIMES.items()}

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
    # For a sequence classifier: a core.jobs.tasks.classifier
    # .ClassifierExperimentSettings; None: its quick defaults, with
    # ``evaluate`` taken from above.
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
    """Apply ``recipe`` to a copy of ``original``, reading its kind's
    calibration data (never the report split) when a pass needs it."""
    check_fits_model(recipe, original)
    return task_for(original).build(original, recipe, settings, progress, cancel)


def check_fits_model(recipe: Recipe, original: LoadedModel) -> None:
    """Refuse, before any calibration or build, a pass whose settings this
    model's config already says it cannot take (the window greys Run with
    the same line)."""
    from core.errors import UnsupportedModelError

    for config in recipe.passes:
        refusal = config.model_refusal(original.model.config)
        if refusal := refusal or config.module_refusal(original.model):
            raise UnsupportedModelError(refusal)


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
    from core.jobs.loaded_graph import graph_run_runtime

    cancel = cancel or CancelToken()
    validate(recipe)
    backend = graph_run_runtime(original, recipe, backend)  # a loaded graph: its own runtime
    check_supports(backend, original.task)
    task_for(original).check(original, settings)  # before anything is built
    check_exportable(backend, original, recipe)  # an ONNX runtime: a family and recipe it takes
    candidate, notes, artifact = original, [], {}
    if recipe.passes:
        compressed = build_compressed(original, recipe, settings, progress, cancel)
        candidate, notes, artifact = compressed.loaded, compressed.notes, compressed.artifact
        recipe = compressed.recipe  # as applied: a heal's steps are recorded, so it rebuilds
    yield from measure_configuration(
        original, candidate, recipe, notes, settings, progress, cancel, backend, artifact=artifact
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
    distilled student) against ``original`` with its kind's protocols; yield
    events, then a RunRecord named ``label`` (default: the recipe's name)."""
    yield from task_for(original).measure(
        original,
        candidate,
        recipe,
        list(notes),
        settings,
        progress,
        cancel or CancelToken(),
        backend,
        label or recipe.name,
        artifact or {},
    )


def read_calibration(loaded: LoadedModel, settings: ExperimentSettings, progress: ProgressSink):
    """The calibration windows ``settings`` ask for (never the report split),
    no longer than ``loaded``'s context."""
    from core.passes.calibration import calibration_windows
    from core.runtime.generation import context_length

    progress(Progress("Reading calibration text", None))
    return calibration_windows(
        loaded.tokenizer,
        settings.calibration_windows,
        min(settings.calibration_length, context_length(loaded.model.config)),
        settings.calibration_source,
    )
