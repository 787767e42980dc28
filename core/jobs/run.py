"""The Run job: build a configuration from a recipe, put it on a runtime,
benchmark it, evaluate it, and hand back one RunRecord with a stable ID and
the provenance that rebuilds exactly what was measured."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from core.progress import CancelToken, ProgressSink, ignore_progress


def _default_settings():
    from core.jobs.experiment import ExperimentSettings

    return ExperimentSettings()


@dataclass(frozen=True)
class RunRequest:
    original: object  # core.models.loading.LoadedModel
    recipe: object  # core.passes.recipe.Recipe
    runtime: str = "torch"  # a key of core.runtime.registry.RUNTIMES
    settings: object = field(default_factory=_default_settings)  # ExperimentSettings
    threads: int | str | None = None  # "auto": chosen by measurement (core.jobs.threads)


def recipe_artifact(recipe, settings) -> dict:
    """What rebuilds a recipe's configuration: the recipe, and the calibration
    text it read (the same windows give the same weights)."""
    artifact = {"kind": "recipe", "recipe": recipe.to_dict()}
    if recipe.needs_calibration():
        artifact["calibration"] = {
            "windows": settings.calibration_windows,
            "length": settings.calibration_length,
            "text": settings.calibration_source,
            "split": "calibration",
        }
    return artifact


def stamp(record, run_id: str, artifact: dict):
    """``record`` with its ID and the provenance fields merged in."""
    return replace(record, run_id=run_id, artifact={**record.artifact, **artifact})


def run(
    request: RunRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield bench and evaluation events as they happen, then the RunRecord."""
    from core.jobs.experiment import run_experiment
    from core.jobs.loaded_graph import graph_run_runtime
    from core.jobs.provenance import new_run_id
    from core.jobs.threads import AUTO, auto_threads
    from core.passes.recipe import Recipe, validate
    from core.results.store import RunRecord
    from core.runtime.device import set_threads
    from core.runtime.registry import check_supports

    validate(request.recipe)
    # a loaded ONNX graph runs, and is recorded, on the runtime that built it
    on = graph_run_runtime(request.original, request.recipe, request.runtime)
    request = replace(request, runtime=on)
    check_supports(request.runtime, request.original.task)
    if request.threads == AUTO:
        auto_threads(request.original, request.runtime, progress, cancel)
    else:
        set_threads(request.threads)
    run_id = new_run_id()
    events = run_experiment(
        request.original, request.recipe, request.settings, progress, cancel, request.runtime
    )
    for event in events:
        if isinstance(event, RunRecord):
            # The recipe as applied (a heal records the steps its budget allowed).
            artifact = recipe_artifact(Recipe.from_dict(event.recipe), request.settings)
            event = stamp(event, run_id, {"runtime": request.runtime, **artifact})
        yield event
