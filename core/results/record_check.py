"""A ``runs.jsonl`` line checked field by field before it becomes a RunRecord.

The file is the user's: edited by hand, merged from another machine, cut by a
kill, or written by a later version. A line whose values have the wrong type
(a size as text, a time of 10**400, NaN, a list where a name goes) would
otherwise reach the table, the chart and the report, and one bad line would
stop the window from opening. Such a line is skipped, and the reader counts
it (``core.results.store.ResultsStore.skipped``) so the window can say so.
"""

from __future__ import annotations

import math
from dataclasses import fields

from core.results.metrics import FLAT_FIELDS, METRICS

TEXT_FIELDS = (
    "model", "recipe_name", "device", "bench_protocol", "eval_protocol",
    "backend", "run_id", "broken", "machine_busy",
)  # fmt: skip
OBJECT_FIELDS = ("recipe", "bytes_by_component", "machine_load", "artifact")
SIGNED_METRICS = frozenset({"mean_kl"})
# Largest number a record may hold: far above any size or time measured,
# and small enough that Qt's and the chart's arithmetic cannot overflow.
MAX_NUMBER = 1e15


def record_problem(data) -> str | None:
    """Why ``data`` is not a record this version can show, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for name in TEXT_FIELDS:
        if name in data and not isinstance(data[name], str):
            return f"{name} is not text"
    for name in OBJECT_FIELDS:
        if name in data and not isinstance(data[name], dict):
            return f"{name} is not an object"
    if "recipe" not in data or not isinstance(data["recipe"].get("passes"), list):
        return "recipe has no list of passes"
    if not all(
        isinstance(p, dict) and isinstance(p.get("pass"), str) for p in data["recipe"]["passes"]
    ):
        return "recipe holds a pass that is not an object naming its pass"
    if not _count(data.get("bytes"), allow_none=False):
        return "bytes is not a whole number >= 0"
    if not _count(data.get("threads"), allow_none=False) or data["threads"] < 1:
        return "threads is not a whole number >= 1"
    if not all(_count(v, allow_none=False) for v in data.get("bytes_by_component", {}).values()):
        return "bytes_by_component holds a value that is not a whole number >= 0"
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        return "notes is not a list of text"
    if "created" in data and not _number(data["created"], allow_none=False):
        return "created is not a time"
    return _metrics_problem(data)


def _metrics_problem(data: dict) -> str | None:
    task = data.get("task", "causal-lm")
    kind = METRICS.get(task) if isinstance(task, str) else None
    if kind is None:
        return f"unknown task {task!r:.40}"
    part = data.get("metrics")
    if part is None:  # written before the split: metrics at the top level
        part = {k: v for k, v in data.items() if k in FLAT_FIELDS}
    if not isinstance(part, dict):
        return "metrics is not an object"
    for f in fields(kind):
        value = part.get(f.name)
        if not _number(value, allow_none=True):
            return f"metrics.{f.name} is not a finite number"
        # Times, rates, perplexity, accuracy and counts are never negative; a
        # KL estimate may round a hair below 0.
        if value is not None and value < 0 and f.name not in SIGNED_METRICS:
            return f"metrics.{f.name} is negative"
    return None


def _number(value, allow_none: bool) -> bool:
    if value is None:
        return allow_none
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):  # JSON holds ints of any size: no float() of them
        return abs(value) <= MAX_NUMBER
    return math.isfinite(value) and abs(value) <= MAX_NUMBER


def _count(value, allow_none: bool) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NUMBER
