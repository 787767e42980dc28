"""The model a stored run measured, rebuilt as Export rebuilds it, to run
it again (serve it): a recipe from the original and its recipe (with the
calibration text it read); a distilled student from its kept weights
(checked by sha256); a run timed on ONNX Runtime opened on the graph it was
timed on (checked by sha256); a compiled run compiled again."""

from __future__ import annotations

from pathlib import Path

from core.progress import CancelToken, ProgressSink, ignore_progress


def measured_model(
    original,
    record,
    settings,
    store_dir: Path | None,
    tokens: int,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
):
    """``record``'s configuration (a LoadedModel) on the runtime it ran on,
    ready for runs of up to ``tokens`` tokens."""
    from core.errors import ProvenanceError
    from core.jobs.experiment import build_compressed
    from core.jobs.export import _is_student
    from core.jobs.on_runtime import prepare
    from core.jobs.provenance import load_trained
    from core.models.source_identity import identity_problem
    from core.passes.recipe import Recipe, validate
    from core.runtime.registry import runtime

    if record.model != original.source:
        raise ProvenanceError(
            f"run {record.run_id} was measured on {record.model!r}, not {original.source!r}"
        )
    if problem := identity_problem(record.artifact, original, record.run_id):
        raise ProvenanceError(problem)
    recipe = Recipe.from_dict(record.recipe)
    validate(recipe)
    on = runtime(record.backend) if record.backend else runtime("torch")
    if _is_student(record):
        if not record.artifact.get("weights_sha256") or store_dir is None:
            raise ProvenanceError(
                f"{record.recipe_name}: its trained weights were not kept; distil it again"
            )
        source = f"{original.source} | {record.recipe_name}"
        candidate = load_trained(store_dir, record.artifact, source)
    elif recipe.passes:
        candidate = build_compressed(original, recipe, settings, progress, cancel).loaded
    else:
        candidate = original
    prepared = prepare(candidate, on.key, tokens, progress, cancel)
    expected = record.artifact.get("onnx_sha256")
    found = prepared.artifact.get("onnx_sha256")
    if on.onnx and expected and found != expected:
        raise ProvenanceError(
            f"the ONNX graph built now (sha256 {found[:12]}) is not the one "
            f"{record.recipe_name} was timed on ({expected[:12]}); measure it again to serve it"
        )
    return prepared.loaded
