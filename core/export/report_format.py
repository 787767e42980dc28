"""The "report" export format: report.json and report.html, written last so
they can say what the other formats wrote."""

from __future__ import annotations

import json
from pathlib import Path

from core.export.formats import ExportInputs, FormatWritten, register_format
from core.message_text import counted
from core.progress import CancelToken, Progress, ProgressSink


def write_report_files(inputs: ExportInputs, folder: Path) -> FormatWritten:
    from core.export.report import build_report, render_html

    report = build_report(
        inputs.original.source,
        inputs.recipe,
        inputs.records,
        inputs.chosen_run_id,
        inputs.environment,
        inputs.formats,
        inputs.written,
        inputs.notes,
    )
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    (folder / "report.html").write_text(render_html(report), encoding="utf-8")
    written = ["report.html", "report.json"]
    recipe_file = folder / report["reproduce"]["recipe_file"]
    if not recipe_file.exists():  # the report's commands read it (hf writes it too)
        recipe_file.write_text(json.dumps(inputs.recipe.to_dict(), indent=2))
        written.append(recipe_file.name)
    run = report["exported_run"] or {}
    measured = "measured runs" if run else "no measured run of this recipe"
    flags = "".join(
        f"; {text}"
        for text, shown in (
            ("the exported run is flagged BROKEN", run.get("broken")),
            ("it was timed on a busy machine", run.get("machine_busy")),
        )
        if shown
    )
    return FormatWritten(
        "report",
        tuple(written),
        f"report ({measured}; {_runs(len(report['runs']))} of this model charted{flags})",
        {"exported_run_id": (report["exported_run"] or {}).get("run_id")},
    )


@register_format("report")
def write_report(
    inputs: ExportInputs, folder: Path, progress: ProgressSink, cancel: CancelToken
) -> FormatWritten:
    progress(Progress("Writing the report", None))
    cancel.raise_if_cancelled()
    return write_report_files(inputs, folder)


def _runs(count: int) -> str:
    return counted(count, "run")
