"""Export formats by name. Each writer gets what the export job prepared and
the job's temporary folder, writes its files there and returns what it did;
the job puts the whole folder in place at once. A new format (ONNX) is one
``@register_format("onnx")`` function in its own module, imported below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.progress import CancelToken, ProgressSink


@dataclass(frozen=True)
class ExportInputs:
    """Everything a format writer may use; nothing here is modified."""

    original: object  # core.models.loading.LoadedModel, the user's model
    compressed: object  # core.models.loading.LoadedModel, apply_recipe's result
    recipe: object  # core.passes.recipe.Recipe
    records: tuple = ()  # core.results.store.RunRecord of this model, for the report
    chosen_run_id: str | None = None  # the record the report presents (None: latest match)
    environment: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    written: dict = field(default_factory=dict)  # format -> FormatWritten details so far
    # The graph a run was timed on in ONNX Runtime (folder, int8, sha256): the
    # onnx format copies it instead of exporting anew, so the export is what ran.
    measured_onnx: dict | None = None
    # The run handed over and what identifies its bytes (provenance.json).
    provenance: dict | None = None
    # Loads a written folder back the way a user would (folder, device) ->
    # LoadedModel: given by the export job, so writers never import loading.
    reload: Callable | None = None
    # The GGUF type of the matrices for the gguf format (core.export.gguf_encode.TYPES).
    gguf_type: str | None = None


@dataclass(frozen=True)
class FormatWritten:
    """One format finished: its files (relative to the export folder) and
    what a person should know about it."""

    format: str
    files: tuple[str, ...]
    summary: str
    details: dict = field(default_factory=dict)


FormatWriter = Callable[[ExportInputs, Path, ProgressSink, CancelToken], FormatWritten]
FORMATS: dict[str, FormatWriter] = {}
# Written after the others, so it can describe what they wrote.
LAST = ("report",)


def register_format(name: str):
    def decorate(writer: FormatWriter) -> FormatWriter:
        if name in FORMATS:
            raise ValueError(f"export format {name!r} registered twice")
        FORMATS[name] = writer
        return writer

    return decorate


def known_formats() -> dict[str, FormatWriter]:
    """The registry, with every bundled writer imported (registered)."""
    from core.export import gguf_format, hf_format, report_format  # noqa: F401

    try:  # the ONNX exporter lives in its own module, where it exists
        from core.export import onnx_format  # noqa: F401
    except ImportError:
        pass
    return FORMATS


def parse_formats(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"hf,report"`` -> ordered, checked format names."""
    from core.atomic_folder import ExportTargetError

    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    known = known_formats()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ExportTargetError(
            f"unknown export format {', '.join(unknown) or '(none)'}; known: "
            f"{', '.join(sorted(known))}"
        )
    ordered = [n for n in dict.fromkeys(names) if n not in LAST]
    return tuple(ordered + [n for n in LAST if n in names])
