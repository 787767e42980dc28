"""The export job: build the configuration from the original and the recipe
(with the same calibration windows the measured run used), then write every
chosen format into one temporary folder that becomes the target only when
all of them succeeded. Cancel or any failure leaves no target and no
temporary folder; the original model and its files are never touched."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from core.atomic_folder import atomic_folder
from core.export.formats import ExportInputs, FormatWritten, known_formats, parse_formats
from core.export.marker import MARKER_NAME, check_export_target, check_replaceable, write_marker
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress


@dataclass(frozen=True)
class ExportResult:
    folder: str
    formats: tuple[str, ...]
    files: tuple[str, ...]
    bytes_written: int
    summaries: dict[str, str]
    details: dict[str, dict]

    def to_dict(self) -> dict:
        return asdict(self)


def export_environment(loaded) -> dict:
    from core.measure.environment import current_environment

    model = loaded.model
    parameter = next(model.parameters())
    return current_environment(parameter.device, parameter.dtype, "torch eager").to_dict()


def _check_rebuilt_size(loaded, records, chosen_run_id: str | None) -> None:
    """A run timed in PyTorch measured the bytes of the very model rebuilt
    here: any other size means it is not that model (refused, not written)."""
    from core.errors import ProvenanceError
    from core.models.size import measure_size
    from core.runtime.registry import runtime

    record = next((r for r in records if chosen_run_id and r.run_id == chosen_run_id), None)
    if record is None or runtime(record.backend or "torch").onnx:
        return  # a graph's bytes are the graph's; no run: nothing to compare
    rebuilt = measure_size(loaded.model).total_bytes
    if rebuilt != record.bytes:
        raise ProvenanceError(
            f"the model rebuilt now holds {rebuilt:,} bytes, not the {record.bytes:,} run "
            f"{record.run_id} measured; measure it again to export it"
        )


def run_export(
    original,
    recipe,
    target: Path,
    formats=("hf", "report"),
    records=(),
    chosen_run_id: str | None = None,
    overwrite: bool = False,
    compressed=None,
    settings=None,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    measured_onnx: dict | None = None,
    provenance: dict | None = None,
    gguf_type: str | None = None,
) -> Iterator[object]:
    """Yield a FormatWritten per format, then the ExportResult.

    ``measured_onnx`` names the ONNX graph a run was timed on (``folder``,
    ``int8``, ``sha256``): the onnx format then hands over that graph.
    ``gguf_type`` is the gguf format's type of the matrices (q8_0 when None).

    ``original`` is a core.models.loading.LoadedModel, ``recipe`` a core.passes.recipe.Recipe,
    ``records`` core.results.store.RunRecord for the report; ``compressed`` may pass
    an apply_recipe result already built from the same original and recipe;
    ``settings`` (core.jobs.experiment.ExperimentSettings) names the calibration
    text when the recipe needs it.
    """
    from core.passes.recipe import validate

    cancel = cancel or CancelToken()
    formats = parse_formats(formats)
    writers = known_formats()
    protected = (original.folder,) if original.folder is not None else ()
    # Refused before any work; overwrite replaces only an earlier export (marker.py).
    check_export_target(Path(target), overwrite, protected)
    validate(recipe)
    if compressed is None:
        from core.jobs.experiment import ExperimentSettings, build_compressed

        # The calibration windows the measured run used (the window may pass its own).
        settings = settings or ExperimentSettings()
        compressed = build_compressed(original, recipe, settings, progress, cancel)
    recipe = compressed.recipe  # as applied: a heal's recorded steps rebuild it
    _check_rebuilt_size(compressed.loaded, records, chosen_run_id)
    inputs = ExportInputs(
        original=original,
        compressed=compressed.loaded,
        recipe=recipe,
        records=tuple(records),
        chosen_run_id=chosen_run_id,
        environment=export_environment(compressed.loaded),
        notes=tuple(compressed.notes),
        formats=formats,
        measured_onnx=measured_onnx,
        provenance=provenance,
        reload=_reload,
        gguf_type=gguf_type,
    )
    written: dict[str, FormatWritten] = {}
    with atomic_folder(Path(target), overwrite, protected, check_replaceable) as temp:
        for name in formats:
            cancel.raise_if_cancelled()
            inputs = replace(
                inputs, written={k: {"summary": w.summary} | w.details for k, w in written.items()}
            )
            result = writers[name](inputs, temp, progress, cancel)
            written[name] = result
            yield result
        cancel.raise_if_cancelled()
        files = tuple(
            sorted(p.relative_to(temp).as_posix() for p in temp.rglob("*") if p.is_file())
        )
        write_marker(temp, files, chosen_run_id, recipe.name, formats)  # last: marks it complete
        files = tuple(sorted((*files, MARKER_NAME)))
        size = sum((temp / f).stat().st_size for f in files)
        progress(Progress("Moving the export into place", None))
    yield ExportResult(
        folder=str(Path(target).expanduser().resolve()),
        formats=formats,
        files=files,
        bytes_written=size,
        summaries={k: w.summary for k, w in written.items()},
        details={k: w.details for k, w in written.items()},
    )


def _reload(folder: Path, device: str):
    """A written folder loaded back as a user would load it (the hf check)."""
    from core.models.loading import load_model

    return load_model(str(folder), device=device)
