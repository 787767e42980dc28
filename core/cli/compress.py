"""`workbench compress`: apply a recipe, benchmark and evaluate it, print
the RunRecord (the same record the window shows and stores)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from core.cli.common import add_model_args, load, progress
from core.cli.json_out import json_text
from core.message_text import shown
from core.runtime.registry import RUNTIMES


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "compress",
        help="apply a recipe, then benchmark and evaluate it against the original",
        description="Passes: " + ", ".join(_pass_names()),
    )
    add_model_args(parser)
    parser.add_argument("--recipe", type=Path, help="recipe JSON file (as the window exports)")
    parser.add_argument(
        "--pass",
        dest="passes",
        action="append",
        default=[],
        metavar="NAME[:K=V,...]",
        help="add a pass, e.g. --pass prune_mlp:fraction=0.25 --pass int4_weight_only:method=gptq",
    )
    parser.add_argument(  # dest: the original always loads in PyTorch; the recipe runs on this
        "--backend",
        dest="run_on",
        default=None,  # torch; None tells a loaded graph that no runtime was named
        choices=list(RUNTIMES),
        help="run the built model in PyTorch eager (default), PyTorch with the decode step "
        "compiled (torch.compile), or exported to ONNX Runtime (fp32, dynamic int8, or "
        "static int8 with a calibration method): "
        + "; ".join(f"{key}: {runtime.label}" for key, runtime in RUNTIMES.items()),
    )
    parser.add_argument("--no-eval", action="store_true", help="speed and size only")
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="do not store the run (by default it is appended to the results the window shows)",
    )
    parser.add_argument("--save", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--json", action="store_true", help="print the RunRecord as JSON")


def _pass_names() -> list[str]:
    from core.passes.names import PASS_NAMES  # no torch: --help answers at once

    return sorted(PASS_NAMES)


def parse_pass(spec: str) -> dict:
    """``name:key=value,...`` -> the dict form a recipe stores, each value read
    as its option's declared type ("abc" for a fraction is refused here)."""
    from core.passes import REGISTRY
    from core.passes.recipe import RecipeError

    name, _, rest = spec.partition(":")
    if name not in REGISTRY:
        raise RecipeError(f"unknown pass {shown(name)}; known: {', '.join(sorted(REGISTRY))}")
    specs = {option.name: option for option in REGISTRY[name].options()}
    item: dict = {"pass": name, "version": REGISTRY[name].version}
    # A comma starts the next key=value, unless what follows is no key (a
    # scope's list: layers=0-3,28 or parts=q,k,v).
    for pair in filter(None, re.split(r",(?=\s*[A-Za-z_]\w*\s*=)", rest)):
        key, eq, text = (part.strip() for part in pair.partition("="))
        if not eq:
            raise RecipeError(f"--pass {name}: expected key=value, got {shown(pair)}")
        if key not in specs:
            known = ", ".join(specs) or "none"
            raise RecipeError(f"--pass {name}: unknown option {shown(key)}; known: {known}")
        if key in item:
            raise RecipeError(f"--pass {name}: {key} given twice")
        item[key] = _typed(name, specs[key], text)
    return item


def _typed(name: str, option, text: str):
    """``text`` as ``option``'s type (the type of its default); range checks
    follow in the pass config, with the same messages as a recipe file."""
    from core.passes.recipe import RecipeError

    kind = type(option.default)
    try:
        if kind is bool:
            return {"true": True, "false": False}[text.lower()]
        if kind is int:
            return int(text, 10)
        if kind is float:
            return float(text)  # "nan" and "inf" parse; the pass config refuses them
    except (KeyError, ValueError):
        wanted = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise RecipeError(
            f"--pass {name}: {option.name} must be {wanted}, got {shown(text)}"
        ) from None
    return text


def build_recipe(args):
    from core.passes.recipe import Recipe, RecipeError

    if args.recipe is not None:
        if args.passes:
            raise RecipeError("give --recipe or --pass, not both")
        return Recipe.from_file(args.recipe)
    return Recipe.from_dict({"format": 1, "passes": [parse_pass(s) for s in args.passes]})


def run(args) -> None:
    from core.jobs.experiment import ExperimentSettings
    from core.jobs.run import RunRequest
    from core.jobs.run import run as run_job
    from core.passes.recipe import validate
    from core.results.store import ResultsStore, RunRecord

    recipe = build_recipe(args)
    validate(recipe)  # refuse before loading anything
    store = ResultsStore()
    if not args.no_save:
        store.check_writable()  # a run that could not be stored is refused before it is made
    loaded = load(args, "torch")  # the original in PyTorch; the recipe runs on --backend
    if args.run_on is not None:  # a named runtime must be a loaded graph's own
        from core.errors import UnsupportedModelError
        from core.jobs.loaded_graph import graph_run_refusal
        from core.runtime.runners import is_onnx_runtime

        if is_onnx_runtime(loaded.model) and (
            refusal := graph_run_refusal(
                loaded.model, loaded.source, recipe, args.run_on, explicit=True
            )
        ):
            raise UnsupportedModelError(refusal)
    settings = ExperimentSettings(evaluate=not args.no_eval)
    request = RunRequest(loaded, recipe, args.run_on or "torch", settings, args.threads)
    record = None
    for event in run_job(request, progress):
        if isinstance(event, RunRecord):
            record = event
    unsaved = None
    if not args.no_save:  # the same record the window stores
        try:
            record = store.append(record)
        except OSError as err:  # the disk filled meanwhile: print what was measured first
            unsaved = err
    if args.json:
        print(json_text(record.to_dict()))
    else:
        _print(record)
    if unsaved is not None:
        raise ValueError(
            f"the run above was measured but could not be stored in {store.path} "
            f"({unsaved.strerror or unsaved})"
        )


def _print(record) -> None:
    from core.cli.record_text import print_record
    from core.models.source_identity import DIGEST_KEY, same_files
    from core.results.store import ResultsStore

    # The original's latest stored run of the same files: what this one is compared with.
    digest = record.artifact.get(DIGEST_KEY, "")
    baseline = next(
        (
            r
            for r in reversed(ResultsStore().load())
            if r.model == record.model and r.is_original and same_files(r.artifact, digest)
        ),
        None,
    )
    print_record(record, None if record.is_original else baseline)
