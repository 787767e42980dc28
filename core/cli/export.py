"""`workbench export`: write a configuration as a Hugging Face folder and/or
a report, atomically. The recipe comes from a file or from a run in the
results store (``--run ID`` or ``--last``)."""

from __future__ import annotations

from pathlib import Path

from core.cli.common import add_model_args, load, progress
from core.cli.json_out import json_text


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "export",
        help="export a configuration: Hugging Face folder (hf), report (HTML + JSON), ONNX, "
        "GGUF for llama.cpp",
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
        "--format",
        default="hf,report",
        help="comma-separated: hf, report, onnx, gguf (default: hf,report)",
    )
    parser.add_argument(
        "--gguf-type",
        default=None,
        choices=("f16", "bf16", "q8_0", "q4_0", "q4_1"),
        help="GGUF type of the weight matrices for --format gguf (default: q8_0); int8 "
        "weights keep their values in q8_0, int4 in q4_1",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it is an earlier workbench export (it carries "
        ".workbench-export.json) or empty; any other folder, a file or a link is refused",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def choose_run(args, records):
    """(recipe, the stored run or None) from --recipe, --run or --last."""
    from core.errors import WorkbenchError
    from core.models.source_identity import canonical_source
    from core.passes.recipe import Recipe

    if args.recipe is not None:  # at most 1 MB of UTF-8, checked as it is read
        return Recipe.from_file(args.recipe), None
    if args.run is not None:
        record = next((r for r in records if r.run_id == args.run), None)
        if record is None:
            raise WorkbenchError(f"no run {args.run!r} in the results store")
        if canonical_source(record.model) != args.model:  # runs before paths were absolute
            from core.models.loading_onnx import is_onnx_folder

            if is_onnx_folder(Path(record.model)):  # advice that would be refused next
                raise WorkbenchError(
                    f"run {args.run} was measured on the ONNX graph {record.model!r}, which is "
                    "its own export; compress the Hugging Face folder it came from and export "
                    "that run"
                )
            raise WorkbenchError(
                f"run {args.run} was measured on {record.model!r}; pass --model {record.model}"
            )
    else:
        mine = [r for r in records if canonical_source(r.model) == args.model]
        if not mine:
            raise WorkbenchError(f"the results store has no run of {args.model!r}")
        record = mine[-1]
    return Recipe.from_dict(record.recipe), record


def run(args) -> None:
    """Hand over a stored run exactly as it was measured (its trained weights,
    the ONNX graph it was timed on), or build and write a recipe file."""
    from core.export.formats import FormatWritten, parse_formats
    from core.export.marker import check_export_target
    from core.jobs.export import ExportRequest, export
    from core.jobs.write_export import ExportResult
    from core.passes.recipe import validate
    from core.results.store import ResultsStore

    formats = parse_formats(args.format)
    if args.gguf_type is not None and "gguf" not in formats:  # it was ignored without a word
        raise ValueError("--gguf-type sets the GGUF file's type; add gguf to --format")
    store = ResultsStore()
    records = store.load()
    recipe, record = choose_run(args, records)
    validate(recipe)
    check_export_target(args.out, args.overwrite)  # refuse before loading anything
    loaded = load(args, "torch")
    request = ExportRequest(
        loaded,
        args.out,
        formats,
        record,
        None if record is not None else recipe,
        tuple(r for r in records if r.model == args.model),
        args.overwrite,
        store_dir=store.path.parent,
        threads=args.threads,
        gguf_type=args.gguf_type or "q8_0",
    )
    result = None
    for event in export(request, progress):
        if isinstance(event, FormatWritten) and not args.json:
            print(f"  {event.format}: {event.summary}")
        elif isinstance(event, ExportResult):
            result = event
    if args.json:
        print(json_text(result.to_dict()))
        return
    name = record.recipe_name if record is not None else recipe.name  # "+ distilled (N steps)"
    print(f"exported {name} to {result.folder} ({result.bytes_written / 1e6:.1f} MB)")
