"""The Export job: hand over exactly what a run measured.

A recipe run is rebuilt from the original and its recipe (with the
calibration text it read; a heal replays the steps and threads it
recorded, and its weights are checked by sha256); a distilled student is
its kept trained weights, checked by sha256; a run timed on ONNX Runtime
also hands over the graph it ran (checked by sha256), beside the PyTorch
folder it was made from; a compiled run exports its eager weights and says
the speed was measured compiled. A recipe file (no run) is built and
exported as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.jobs.run import _default_settings
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress


@dataclass(frozen=True)
class ExportRequest:
    original: object  # core.models.loading.LoadedModel
    target: Path
    formats: tuple[str, ...] = ("hf", "report")
    record: object = None  # core.results.store.RunRecord: the run to hand over
    recipe: object = None  # core.passes.recipe.Recipe, when exporting a recipe with no run
    records: tuple = ()  # runs of this model, for the report's chart
    overwrite: bool = False
    settings: object = field(default_factory=_default_settings)  # ExperimentSettings
    store_dir: Path | None = None  # where a student's trained weights are kept
    threads: int | None = None
    gguf_type: str = "q8_0"  # the gguf format's matrix type (core.export.gguf_encode.TYPES)


def _is_student(record) -> bool:
    from core.jobs.provenance import TRAINED

    return record.artifact.get("kind") == TRAINED or "distilled" in record.recipe_name


def _trained(request: ExportRequest, recipe):
    from core.jobs.provenance import ProvenanceError, load_trained
    from core.passes.recipe import CompressedModel

    record = request.record
    if not record.artifact.get("weights_sha256"):
        raise ProvenanceError(
            f"{record.recipe_name}: its trained weights were not kept (measured before runs "
            "kept them); distil the student again to export it"
        )
    if request.store_dir is None:
        raise ProvenanceError("the results store's folder is needed to find trained weights")
    source = f"{request.original.source} | {record.recipe_name}"
    loaded = load_trained(request.store_dir, record.artifact, source)
    note = (
        f"trained weights kept by run {record.run_id} (sha256 "
        f"{record.artifact['weights_sha256'][:12]}); distillation settings in report.json"
    )
    return CompressedModel(loaded, recipe, [note])


def _rebuilt_heal(request: ExportRequest, recipe, progress, cancel):
    """A healed run rebuilt as measured (its recorded steps replayed on the
    thread count it trained with), its weights checked against the run's sha256."""
    from core.jobs.experiment import build_compressed
    from core.jobs.heal import check_rebuilt

    record = request.record
    compressed = build_compressed(request.original, recipe, request.settings, progress, cancel)
    check_rebuilt(compressed, record.artifact, record.recipe_name)
    return compressed


def _measured_graph(record, compressed, progress, cancel) -> dict:
    """The graph ``record`` was timed on, found in (or remade into) the export
    cache and checked by sha256 against what the run recorded."""
    from core.jobs.provenance import ProvenanceError
    from core.onnx.cache import cached_onnx_export, graph_digest, graph_kind
    from core.runtime.registry import runtime

    on = runtime(record.backend)
    int8, calibration = on.int8, on.calibration  # calibration: static int8's method
    folder = cached_onnx_export(
        compressed.loaded, int8, progress, cancel, calibration, on.weight_bits, on.fused
    )
    found = graph_digest(folder)
    expected = record.artifact.get("onnx_sha256")
    if expected and found != expected:
        raise ProvenanceError(
            f"the ONNX graph built now (sha256 {found[:12]}) is not the one "
            f"{record.recipe_name} was timed on ({expected[:12]}); measure it again to export it"
        )
    return {
        "folder": str(folder),
        "int8": int8 or bool(calibration) or bool(on.weight_bits),
        "kind": graph_kind(int8, calibration, on.weight_bits, on.fused),
        "sha256": found,
        "verified": bool(expected),
    }


def export(
    request: ExportRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield a FormatWritten per format, then the ExportResult."""
    from core.export.formats import parse_formats
    from core.export.marker import check_export_target
    from core.jobs.experiment import build_compressed
    from core.jobs.loaded_graph import EXPORT, require_pytorch
    from core.jobs.write_export import run_export
    from core.passes.recipe import Recipe, validate
    from core.runtime.device import set_threads
    from core.runtime.registry import runtime

    cancel = cancel or CancelToken()
    original = request.original
    # an exported graph's folder is already its export; formats rebuild PyTorch modules
    require_pytorch(original, EXPORT)
    protected = (original.folder,) if original.folder is not None else ()
    check_export_target(Path(request.target), request.overwrite, protected)  # before any work
    record = request.record
    if (record is None) == (request.recipe is None):
        raise ValueError("export a run or a recipe, not both and not neither")
    recipe = Recipe.from_dict(record.recipe) if record is not None else request.recipe
    validate(recipe)
    formats = parse_formats(request.formats)
    if "onnx" in formats:  # refused before the other formats are written
        from core.errors import UnsupportedModelError
        from core.jobs.on_runtime import runtime_refusal

        if original.is_classifier:
            raise UnsupportedModelError(
                "ONNX export takes causal language models; a classifier exports as a "
                "Hugging Face folder (hf) and a report"
            )
        # a family the exporter refuses, a recipe of PyTorch int8/int4 layers
        if refusal := runtime_refusal("ort", original.model, recipe, measuring=False):
            raise UnsupportedModelError(refusal)
    if "gguf" in formats:  # an unsupported family or type is refused before any work
        from core.export.gguf_format import check_gguf_request

        check_gguf_request(original.model.config, request.gguf_type)
    if record is not None:
        from core.errors import ProvenanceError
        from core.models.source_identity import identity_problem

        if problem := identity_problem(record.artifact, original, record.run_id):
            raise ProvenanceError(problem)
    set_threads(request.threads)
    compressed = measured = None
    if record is not None and record.broken:  # exported as measured, never silently
        progress(Progress(f"Exporting a run flagged BROKEN ({record.broken})", None))
    if record is not None:
        on = runtime(record.backend) if record.backend else runtime("torch")
        if _is_student(record):
            compressed = _trained(request, recipe)
        elif "heal" in record.artifact:
            compressed = _rebuilt_heal(request, recipe, progress, cancel)
        if on.onnx:
            if "onnx" not in formats:  # the graph that ran is what the run was
                formats = parse_formats((*formats, "onnx"))
            if compressed is None:
                compressed = build_compressed(
                    request.original, recipe, request.settings, progress, cancel
                )
            measured = _measured_graph(record, compressed, progress, cancel)
    yield from run_export(
        request.original,
        recipe,
        Path(request.target),
        formats,
        records=_with_record(_of_these_files(request.records, request.original), record),
        chosen_run_id=record.run_id if record is not None else None,
        overwrite=request.overwrite,
        compressed=compressed,
        settings=request.settings,
        progress=progress,
        cancel=cancel,
        measured_onnx=measured,
        provenance=_provenance(record, measured),
        gguf_type=request.gguf_type,
    )


def _of_these_files(records, original) -> tuple:
    """The runs measured on the files loaded now: the report's original and
    chart are not those of a folder since changed."""
    from core.models.source_identity import folder_digest, same_files

    digest = folder_digest(original.folder)
    return tuple(r for r in records if same_files(r.artifact, digest))


def _with_record(records, record) -> tuple:
    """The report's runs, always including the one exported."""
    records = tuple(records)
    if record is not None and all(r.run_id != record.run_id for r in records):
        records += (record,)
    return records


def _provenance(record, measured: dict | None) -> dict | None:
    """What the export hands over, for provenance.json: the run, its runtime
    and what identifies its bytes."""
    if record is None:
        return None
    from core.runtime.registry import label

    data = {
        "run_id": record.run_id,
        "run": record.recipe_name,
        "measured_on": label(record.backend),
        "artifact": record.artifact,
    }
    if record.broken:  # its numbers collapsed (core.evaluate.health): the file says so too
        data["broken"] = record.broken
    if measured is not None:
        data["onnx_graph"] = {k: measured[k] for k in ("int8", "sha256", "verified")}
    return data
