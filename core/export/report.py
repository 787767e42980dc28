"""The stakeholder report: one JSON object and one self-contained HTML file
(styles inline, charts as base64 PNG). Only measured numbers appear; a
measurement that is missing is null in the JSON and "not measured" in HTML.
"""

from __future__ import annotations

import base64
import html
import json
import shlex
import time

from core.measure.compare import TIMED_METRICS, incomparable, speed_range, speed_verdict
from core.results.pareto import pareto_front, why_off_front

# (field, label, unit, lower is better)
METRICS = (
    ("bytes", "Size of stored weights", "MB", True),
    ("prefill_ms", "Prefill latency (median)", "ms", True),
    ("decode_ms_per_token", "Decode latency (median)", "ms/token", True),
    ("tokens_per_s", "Decode throughput", "tokens/s", False),
    ("ppl", "Perplexity", "", True),
    ("top1_agreement", "Top-1 agreement with the original", "", False),
    ("mean_kl", "Mean KL to the original", "nats/token", True),
)
NOT_MEASURED = "not measured"


def _same_recipe(record, recipe_dict: dict) -> bool:
    return record.recipe.get("passes", []) == recipe_dict.get("passes", [])


def _measured_on(chosen) -> str | None:
    """The runtime the exported run's numbers were measured on, in words."""
    if chosen is None:
        return None
    from core.runtime.registry import label

    return label(chosen.backend)


def pick_records(records, model: str, recipe_dict: dict, chosen_run_id: str | None):
    """(runs of this model, the chosen run, the original's run): the latest
    matching ones; the chosen run may be named by its id."""
    runs = [r for r in records if r.model == model]
    if chosen_run_id:
        chosen = next((r for r in runs if r.run_id == chosen_run_id), None)
    else:  # a recipe with no run named: only a PyTorch eager run of it is what is exported
        chosen = next(
            (
                r
                for r in reversed(runs)
                if _same_recipe(r, recipe_dict)
                and r.backend == "torch"
                and not r.artifact.get("weights_sha256")
            ),
            None,
        )
    original = next((r for r in reversed(runs) if r.is_original), None)
    return runs, chosen, original


def _value(record, name: str):
    if record is None:
        return None
    value = record.bytes if name == "bytes" else record.metric(name)
    return value / 1e6 if name == "bytes" and value is not None else value


def same_runtime_original(runs, chosen):
    """The latest run of the original on the chosen run's runtime (compiled,
    ONNX Runtime...): the baseline that shows what the compression alone
    gained, apart from what the runtime gained."""
    if chosen is None:
        return None
    return next(
        (r for r in reversed(runs) if not r.recipe.get("passes") and r.backend == chosen.backend),
        None,
    )


def _verdict(baseline, run, name: str) -> str | None:
    if baseline is None or run is None or _value(run, name) is None:
        return None
    return speed_verdict(speed_range(baseline.metric, name), speed_range(run.metric, name))


def _ratio(a, b):
    return a / b if a is not None and b else None


def comparison(chosen, original, runtime_original=None) -> list[dict]:
    """One row per metric: exported, the original (PyTorch eager) and the
    ratio; ``ratio_same_runtime`` divides by the original on the exported
    run's runtime instead (None where that was not measured). A ratio
    between runs measured otherwise (threads, device, protocol, windows) is
    not given: ``why_no_ratio`` says why."""
    rows = []
    for name, label, unit, lower in METRICS:
        a, b = _value(chosen, name), _value(original, name)
        row = {"metric": name, "label": label, "unit": unit, "lower_is_better": lower}
        row |= {"exported": a, "original": b}
        for key, baseline in (("ratio", original), ("ratio_same_runtime", runtime_original)):
            why = incomparable(chosen, baseline, name)
            row[key] = None if why else _ratio(a, _value(baseline, name))
            if why:
                row[f"why_no_{key}"] = why
        if name in TIMED_METRICS:  # faster or slower only when the p10-p90 ranges are apart
            row["verdict"] = None if "why_no_ratio" in row else _verdict(original, chosen, name)
            row["verdict_same_runtime"] = (
                None
                if "why_no_ratio_same_runtime" in row
                else _verdict(runtime_original, chosen, name)
            )
        if name == "ppl":  # the 95% interval: its ends, and half its width for old runs
            for key, run in (("exported", chosen), ("original", original)):
                for end in ("ci95", "ci95_low", "ci95_high"):
                    row[f"{key}_{end}"] = run.metric(f"ppl_{end}") if run else None
        rows.append(row)
    return rows


def commands(
    model: str, formats: tuple[str, ...], gguf_type: str | None = None, run=None
) -> list[str]:
    """The command lines that measure and export the recipe again: on the
    runtime and in the dtype ``run`` (the exported RunRecord) was measured."""
    from core.models.source_identity import DTYPE_KEY

    m = shlex.quote(model)
    gguf = f" --gguf-type {gguf_type}" if gguf_type and "gguf" in formats else ""
    dtype = (run.artifact.get(DTYPE_KEY) if run is not None else "") or ""
    load = f" --dtype {dtype}" if dtype and dtype != "float32" else ""
    backend = run.backend if run is not None and run.backend else "torch"
    on = f" --backend {backend}" if backend != "torch" else ""
    if trained(run):  # the recipe rebuilds the student before training, not these weights
        return [
            f"workbench export --model {m} --run {run.run_id} --out EXPORT_FOLDER "
            f"--format {','.join(formats)}{gguf}"
        ]
    return [
        f"workbench compress --model {m}{load} --recipe recipe.json{on} --save",
        f"workbench export --model {m}{load} --recipe recipe.json --out EXPORT_FOLDER "
        f"--format {','.join(formats)}{gguf}",
    ]


def trained(run) -> bool:
    """A run whose weights were trained (distillation): kept beside the store,
    not rebuilt from its recipe (core.jobs.provenance)."""
    # core.jobs.provenance.TRAINED: core.export never imports core.jobs (import contract)
    return run is not None and run.artifact.get("kind") == "trained-weights"


def _reproduce_words(report: dict) -> str:
    """What the Reproduce section says before its commands."""
    training = report["reproduce"].get("training")
    if training is None:
        return (
            "Save the recipe as <code>recipe.json</code> (it is also in the export folder), then:"
        )
    steps = report["reproduce"].get("steps")
    return html.escape(
        f"These weights were trained ({steps} distillation steps, settings below): the "
        "recipe builds the student before training, not these weights. The run keeps them "
        "beside its results store; this exports them again:"
    )


def _front_ids(runs, x_name: str, reference) -> tuple[list, list[str]]:
    """The runs charted, and the front among those measured like ``reference``
    (a collapsed run, or one timed or scored otherwise, is never on it)."""
    measured = [r for r in runs if _value(r, x_name) is not None and r.metric("ppl") is not None]
    healthy = [r for r in measured if not why_off_front(r, reference, (x_name, "ppl"))]
    front = pareto_front([(_value(r, x_name), r.metric("ppl")) for r in healthy])
    return measured, [healthy[i].run_id for i in front]


def build_report(
    model: str,
    recipe,
    records,
    chosen_run_id: str | None,
    environment: dict,
    formats: tuple[str, ...],
    exported: dict,
    notes: tuple[str, ...] = (),
) -> dict:
    """The report as one JSON-ready dict."""
    recipe_dict = recipe.to_dict()
    runs, chosen, original = pick_records(records, model, recipe_dict, chosen_run_id)
    runtime_original = same_runtime_original(runs, chosen)
    pareto = {}
    for axis in ("bytes", "decode_ms_per_token"):
        measured, front = _front_ids(runs, axis, chosen or original)
        pareto[f"{axis}_vs_ppl"] = {"runs_charted": len(measured), "front_run_ids": front}
    return {
        "title": f"{model}: {chosen.recipe_name if trained(chosen) else recipe.name}",
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "model": model,
        "recipe_name": recipe.name,
        "recipe": recipe_dict,
        "environment": environment,
        "measured_on": _measured_on(chosen),
        "exported_run": chosen.to_dict() if chosen else None,
        "original_run": original.to_dict() if original else None,
        "runtime_original_run": runtime_original.to_dict() if runtime_original else None,
        "comparison": comparison(chosen, original, runtime_original),
        "runs": [r.to_dict() for r in runs],
        "pareto": pareto,
        "reproduce": {
            "recipe_file": "recipe.json",
            "commands": commands(
                model, formats, (exported.get("gguf") or {}).get("gguf_type"), chosen
            ),
            **(
                {"training": chosen.artifact.get("distill"), "steps": chosen.artifact.get("steps")}
                if trained(chosen)
                else {}
            ),
        },
        "exported": exported,
        "notes": list(notes),
    }


# ---------------------------------------------------------------- HTML


def _fmt(value, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return NOT_MEASURED
    if isinstance(value, float):
        text = f"{value:.{digits}g}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def _chart(report: dict, axis: str, x_label: str, title: str) -> str:
    from core.export.report_chart import tradeoff_png
    from core.results.store import RunRecord

    runs = [RunRecord.from_dict(r) for r in report["runs"]]
    measured = [r for r in runs if _value(r, axis) is not None and r.metric("ppl") is not None]
    left_out = len(runs) - len(measured)
    if not measured:
        return f"<p><em>{html.escape(title)}: {NOT_MEASURED} (no run has both numbers).</em></p>"
    ids = [r.run_id for r in measured]
    chosen = (report["exported_run"] or {}).get("run_id")
    original = (report["original_run"] or {}).get("run_id")
    front = report["pareto"][f"{axis}_vs_ppl"]["front_run_ids"]
    reference = _of_id(runs, chosen) or _of_id(runs, original)
    png = tradeoff_png(
        [(_value(r, axis), r.metric("ppl")) for r in measured],
        [r.recipe_name for r in measured],
        ids.index(chosen) if chosen in ids else None,
        ids.index(original) if original in ids else None,
        x_label,
        "perplexity (lower is better)",
        title,
        front=[ids.index(i) for i in front if i in ids],
        broken=[bool(r.broken) for r in measured],
        elsewhere=[bool(why_off_front(r, reference, (axis, "ppl"))) for r in measured],
    )
    data = base64.b64encode(png).decode("ascii")
    note = f" {left_out} run(s) without both numbers are not charted." if left_out else ""
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{len(measured)} runs of this model; star: exported, square: original; "
        f"line: configurations no other run beats on both axes, among those measured like the "
        f"exported run; hollow: timed or scored otherwise (threads, protocol, text, busy "
        f"machine); ×: collapsed (BROKEN). Neither is on the line.{note}</figcaption></figure>"
    )


def _of_id(runs, run_id):
    return next((r for r in runs if r.run_id == run_id), None)


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _comparison_rows(report: dict) -> list[list[str]]:
    rows = []
    for row in report["comparison"]:
        unit = row["unit"]
        exported, original = _fmt(row["exported"], unit), _fmt(row["original"], unit)
        if row["metric"] == "ppl":
            exported, original = _ppl_text(row, "exported"), _ppl_text(row, "original")
        ratios = [_ratio_text(row, key) for key in ("ratio", "ratio_same_runtime")]
        if row["metric"] in ("top1_agreement", "mean_kl") and row["original"] is not None:
            original = "the original itself"  # compared with itself: defined, not measured
        rows.append([row["label"], exported, original, *ratios])
    return rows


def _ratio_text(row: dict, key: str) -> str:
    if why := row.get(f"why_no_{key}"):
        return f"not comparable: {why}"
    if row.get(key) is None:
        return NOT_MEASURED
    return f"{row[key]:.3f}×" + _verdict_text(row, key)


def _verdict_text(row: dict, ratio_key: str) -> str:
    verdict = row.get(ratio_key.replace("ratio", "verdict"))
    return f", {verdict}" if verdict else ""


def _ppl_text(row: dict, key: str) -> str:
    """Perplexity with its 95% interval's ends (it is not symmetric); runs
    stored before the ends were kept show half its width, named so."""
    value, low, high = row[key], row.get(f"{key}_ci95_low"), row.get(f"{key}_ci95_high")
    if value is None:
        return NOT_MEASURED
    if low is not None and high is not None:
        return f"{value:.4g} (95% CI {low:.4g} to {high:.4g})"
    if row.get(f"{key}_ci95") is not None:
        return f"{value:.4g} (95% CI half-width {row[f'{key}_ci95']:.2g})"
    return f"{value:.4g}"


def _protocol_rows(report: dict) -> list[list[str]]:
    rows = []
    for label, run in (("exported", report["exported_run"]), ("original", report["original_run"])):
        if run is None:
            rows.append([label, NOT_MEASURED, NOT_MEASURED, NOT_MEASURED])
        else:
            rows.append(
                [
                    label,
                    f"{run['device']}, {run['threads']} threads",
                    run["bench_protocol"] or NOT_MEASURED,
                    run["eval_protocol"] or NOT_MEASURED,
                ]
            )
    return rows


def _warnings(report: dict) -> list[str]:
    """Lines above everything: the exported run collapsed (red), a run was
    timed while other programs used the CPU (amber)."""
    run = report["exported_run"] or {}
    lines = []
    if run.get("broken"):
        lines.append(f"<p class='broken'>BROKEN: {html.escape(run['broken'])}</p>")
    for label, timed in (("exported", run), ("original", report["original_run"] or {})):
        if timed.get("machine_busy"):
            busy = html.escape(timed["machine_busy"])
            lines.append(f"<p class='busy'>The {label} run was timed on a busy machine: {busy}</p>")
    return lines


GGUF_HOW = {
    "cast": "float values stored as this type",
    "kept": "the configuration's own int8/int4 values, their scales stored in F16",
    "rounded": "rounded onto this type's grid by the gguf package",
}


def _block_ranges(blocks: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    ranges, start = [], None
    for i, b in enumerate(blocks):
        start = b if start is None else start
        if i + 1 == len(blocks) or blocks[i + 1] != b + 1:
            ranges.append(str(b) if start == b else f"{start}-{b}")
            start = None
    return ", ".join(ranges)


def _gguf_section(report: dict) -> list[str]:
    """Which GGUF type each tensor got (blocks folded), and how."""
    info = report["exported"].get("gguf")
    if not info or not info.get("tensor_types"):
        return []
    rows = [
        [
            row["tensor"],
            row["type"],
            GGUF_HOW.get(row["how"], row["how"]),
            _block_ranges(row["blocks"]) if row["blocks"] else "",
        ]
        for row in info["tensor_types"]
    ]
    return [
        f"<h3>GGUF tensor types ({html.escape(info['file'])})</h3>",
        _table(rows, ["tensor", "GGUF type", "how", "blocks"]),
        "<p>Read back with the gguf package and compared with the configuration's weights: "
        f"max |error| {info['max_abs_error']:.3g}, worst block "
        f"{info['max_over_half_step']:.3g} half grid steps (a block rounded to nearest is "
        "within 1, plus what storing its scale in F16 adds).</p>",
    ]


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:900px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f6f8}pre{background:#f4f6f8;padding:.8em;overflow-x:auto;font-size:.85em}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}
.broken{color:#b00020;font-weight:bold}.busy{color:#8a5a00;font-weight:bold}
"""


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page."""
    esc = html.escape
    env_rows = [[k, str(v)] for k, v in report["environment"].items()]
    exported_rows = [
        [fmt, str(info.get("summary", ""))] for fmt, info in report["exported"].items()
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(report['title'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(report['title'])}</h1>",
        f"<p>Exported {esc(report['created'])} from <code>{esc(report['model'])}</code>. "
        + (
            f"Speed, size and quality measured on <b>{esc(report['measured_on'])}</b> "
            f"(run {esc(report['exported_run']['run_id'])}). "
            if report.get("measured_on")
            else ""
        )
        + "Every number below was measured; what was not is marked "
        f"“{NOT_MEASURED}”.</p>",
        *_warnings(report),
        "<h2>Exported configuration against the original</h2>",
        _table(
            _comparison_rows(report),
            ["", "exported", "original", "ratio", "ratio, same runtime"],
        ),
        "<p>Ratio: exported ÷ the original run in PyTorch eager, so a speed ratio holds the "
        "runtime's gain and the compression's together. Ratio, same runtime: exported ÷ the "
        "original run on the exported run's runtime, the compression's gain alone. "
        "A speed is called faster or slower only when the two runs' p10-p90 ranges are "
        "apart; overlapping ranges are within noise. "
        "Perplexity's 95% interval is not symmetric: both ends are given.</p>",
        _table(_protocol_rows(report), ["run", "device", "speed protocol", "quality protocol"]),
        "<h2>Trade-off against every run of this model</h2>",
        _chart(report, "bytes", "stored weights (MB)", "Size against perplexity"),
        _chart(report, "decode_ms_per_token", "decode ms/token", "Latency against perplexity"),
        "<h2>What was exported</h2>",
        _table(exported_rows, ["format", "contents"]) if exported_rows else "<p>report only</p>",
    ]
    parts += _gguf_section(report)
    if report["notes"]:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in report["notes"]) + "</ul>")
    parts += [
        "<h2>Reproduce it</h2>",
        f"<p>{_reproduce_words(report)}</p>",
        "<pre>" + esc("\n".join(report["reproduce"]["commands"])) + "</pre>",
        "<pre>" + esc(json.dumps(report["recipe"], indent=2)) + "</pre>",
    ]
    if (training := report["reproduce"].get("training")) is not None:
        parts += ["<pre>" + esc(json.dumps(training, indent=2)) + "</pre>"]
    parts += [
        "<h2>Environment of the export</h2>",
        _table(env_rows, ["", ""]),
        "</body></html>",
    ]
    return "\n".join(parts)
