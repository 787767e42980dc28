"""`workbench sensitivity`: the per-layer sensitivity map (the Sensitivity
job): each layer, or each layer's part or component, compressed alone by a
probe pass and scored on the dev split; a line per cell as it is measured,
or JSON.

Resumable, automatically: every cell is stored as it is measured (beside
the run store, core/results/sensitivity_store.py) and a later run of the
same model, probe and protocol measures only the cells not stored yet;
``--fresh`` measures them all again."""

from __future__ import annotations

import math

from core.cli.args import whole
from core.cli.common import add_model_args, load, note
from core.cli.json_out import json_text


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "sensitivity",
        help="how much each layer hurts when it alone is compressed (KL on the dev split)",
    )
    add_model_args(parser)
    parser.add_argument(
        "--probe",
        default="int4_weight_only:group_size=128,method=rtn",
        metavar="NAME[:K=V,...]",
        help="the pass applied to one layer at a time (default: int4 g128 RTN); also "
        "prune_mlp[:fraction=F] (that share of one layer's MLP neurons removed, 0.25 by "
        "default) and drop_layer (the layer removed; prune_layers is the same)",
    )
    parser.add_argument(
        "--parts",
        default="",
        help="one cell per layer and part or component, e.g. q,k,v,o,gate,up,down or "
        "attention,mlp (default: whole layers)",
    )
    parser.add_argument("--windows", type=whole(1), default=4, help="dev-split windows a cell")
    parser.add_argument(
        "--text",
        default="news",
        choices=["news", "pydoc"],
        help="the text whose dev split scores the cells (and whose calibration split "
        "calibrates a probe that needs it; default news)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="measure every cell again (by default cells stored by an earlier run of the "
        "same model, probe and protocol are reused: a cancelled map resumes)",
    )
    parser.add_argument("--json", action="store_true", help="print the map as one JSON object")


def run(args) -> None:
    from dataclasses import asdict

    from core.cli.compress import parse_pass
    from core.jobs.experiment import ExperimentSettings
    from core.jobs.sensitivity import (
        SensitivityCell,
        SensitivityRequest,
        SensitivityResumed,
        check_probe,
        parse_cells,
        sensitivity,
        store_key,
    )
    from core.jobs.sensitivity_probes import columns_of, probe_from_dict
    from core.results.jsonl_append import check_appendable
    from core.results.sensitivity_store import SensitivityStore

    name, colon, options = args.probe.partition(":")
    name = "prune_layers" if name == "drop_layer" else name  # the same probe, its plain name
    probe = probe_from_dict(parse_pass(name + colon + options))  # refused before the model loads
    check_probe(probe)
    parts = parse_cells(args.parts)
    columns_of(probe, parts)  # a layer probe's own columns: other parts refused here
    store = SensitivityStore()
    check_appendable(store.path)  # each cell is stored as it is measured
    loaded = load(args, runtime="torch")
    settings = ExperimentSettings(text_source=args.text)
    request = SensitivityRequest(loaded, probe, parts, args.windows, settings, store)
    if args.fresh:
        store.reset(store_key(request))
    result = None
    for event in sensitivity(request):
        if isinstance(event, SensitivityResumed):
            note(f"{len(event.cells)} of {event.total} cells read back from {store.path}")
        if isinstance(event, SensitivityCell):
            where = f"layer {event.layer}" + (f" {event.part}" if event.part else "")
            note(f"{where}: {cell_text(event)}")
        result = event
    if args.json:
        print(json_text(asdict(result)))
        return
    print(f"probe {probe.summary()}; {result.protocol}")
    broken = [c for c in result.cells if not _finite(c)]
    for cell in sorted(
        result.cells, key=lambda c: c.mean_kl if _finite(c) else math.inf, reverse=True
    ):
        where = f"layer {cell.layer:3d}" + (f" {cell.part:9s}" if cell.part else "")
        print(f"  {where}  {cell_text(cell)}")
    if broken:
        print(
            f"  BROKEN: {len(broken)} of {len(result.cells)} cells are not numbers (NaN in the "
            "weights or activations: try float32, or check the model)"
        )


def _finite(cell) -> bool:
    return all(v is not None and math.isfinite(v) for v in (cell.mean_kl, cell.ppl_ratio))


def cell_text(cell) -> str:
    if not _finite(cell):
        return "not a number (NaN)"
    kl = max(cell.mean_kl, 0.0)  # KL is >= 0: a negative one is float round-off ("-0.00000")
    return f"KL {kl:.5f}  perplexity x{cell.ppl_ratio:.4f}"
