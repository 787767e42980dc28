"""`workbench export`: write a configuration as a Hugging Face folder and/or
a report, atomically. The recipe comes from a file or from a run in the
results store (``--run ID`` or ``--last``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(sub, add_model_args) -> None:
    parser = sub.add_parser(
        "export",
        help="export a configuration: Hugging Face folder (hf), report (HTML + JSON)",
        description="Builds the recipe's configuration from the model and writes the chosen "
        "formats into --out all at once (nothing is left behind if it fails or is cancelled).",
    )
    add_model_args(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--recipe", type=Path, help="recipe JSON file")
    source.add_argument("--run", metavar="ID", help="the recipe of this run in the results store")
    source.add_argument(
        "--last", action="store_true", help="the recipe of this model's latest stored run"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="export folder (new, or see --overwrite)"
    )
    parser.add_argument(
        "--format", default="hf,report", help="comma-separated: hf, report (default: both)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it is an earlier workbench export (it carries "
        ".workbench-export.json) or empty; any other folder, a file or a link is refused",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def choose_recipe(args, records):
    """(recipe, chosen run id) from --recipe, --run or --last."""
    from core.errors import WorkbenchError
    from core.passes.recipe import Recipe

    if args.recipe is not None:  # at most 1 MB of UTF-8, checked as it is read
        return Recipe.from_file(args.recipe), None
    if args.run is not None:
        record = next((r for r in records if r.run_id == args.run), None)
        if record is None:
            raise WorkbenchError(f"no run {args.run!r} in the results store")
        if record.model != args.model:
            raise WorkbenchError(
                f"run {args.run} was measured on {record.model!r}; pass --model {record.model}"
            )
    else:
        mine = [r for r in records if r.model == args.model]
        if not mine:
            raise WorkbenchError(f"the results store has no run of {args.model!r}")
        record = mine[-1]
    return Recipe.from_dict(record.recipe), record.run_id


def cmd_export(args, load) -> None:
    from core.export.formats import FormatWritten, parse_formats
    from core.export.marker import check_export_target
    from core.jobs.write_export import ExportResult, run_export
    from core.passes.recipe import validate
    from core.progress import Progress
    from core.results.store import ResultsStore

    formats = parse_formats(args.format)
    records = ResultsStore().load()
    recipe, run_id = choose_recipe(args, records)
    validate(recipe)
    check_export_target(args.out, args.overwrite)  # refuse before loading anything
    loaded = load(args)

    def progress(event: Progress) -> None:
        print(f"[{event.stage}]", file=sys.stderr, flush=True)

    result = None
    for event in run_export(
        loaded,
        recipe,
        args.out,
        formats,
        records=records,
        chosen_run_id=run_id,
        overwrite=args.overwrite,
        progress=progress,
    ):
        if isinstance(event, FormatWritten) and not args.json:
            print(f"  {event.format}: {event.summary}")
        elif isinstance(event, ExportResult):
            result = event
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print(f"exported {recipe.name} to {result.folder} ({result.bytes_written / 1e6:.1f} MB)")
