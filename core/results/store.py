"""Every configuration measured, persisted as it is measured.

One JSON object per line in ``runs.jsonl`` in the user's data directory
(``$WORKBENCH_DATA_DIR`` overrides it). Each record is appended and flushed
to disk the moment it exists, so a crash or a kill loses at most the run in
progress; a damaged last line (a kill mid-write) is skipped on reading.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from core.results.jsonl_append import append_json_line, check_appendable, require_regular_file
from core.results.metrics import (
    CAUSAL_LM,
    FLAT_FIELDS,
    ClassifierMetrics,
    LMMetrics,
    metrics_from_dict,
    metrics_to_dict,
)
from core.results.record_check import record_problem


@dataclass(frozen=True)
class RunRecord:
    """One configuration of one model, with how each number was measured.

    ``metrics`` is the task's own part (core.results.metrics): LMMetrics for
    a causal LM, ClassifierMetrics for a sequence classifier. Fields added
    later have defaults, and ``from_dict`` reads older ``runs.jsonl`` lines
    (metrics at the top level, before the split) as well as current ones.
    """

    model: str
    recipe: dict  # core.passes.recipe.Recipe.to_dict()
    recipe_name: str
    bytes: int
    bytes_by_component: dict[str, int]
    metrics: LMMetrics | ClassifierMetrics
    device: str
    threads: int
    bench_protocol: str
    eval_protocol: str
    notes: list[str] = field(default_factory=list)
    backend: str = "torch"  # a key of core.runtime.registry.RUNTIMES
    created: float = field(default_factory=time.time)
    run_id: str = ""
    # Trust (issue 12). ``broken``: why this configuration collapsed (top-1
    # agreement < 0.5 or perplexity > 3x the original's on the same tokens),
    # empty when it did not. ``machine_load``: other processes' load seen
    # before and after the timed runs; ``machine_busy`` names it when it was
    # high enough to disturb the timings (empty: quiet). ``artifact``: what
    # rebuilds exactly what was measured (recipe, runtime, trained weights and
    # their sha256, ONNX graph).
    broken: str = ""
    machine_load: dict = field(default_factory=dict)
    machine_busy: str = ""
    artifact: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A measurement that is not a number (NaN weights) is not a number to
        # show, chart or store: it is None ("not measured"), and ``broken``
        # (set by the job from the raw values) says what happened.
        not_numbers = {
            f.name: None
            for f in fields(self.metrics)
            if isinstance(v := getattr(self.metrics, f.name), float) and not math.isfinite(v)
        }
        if not_numbers:
            object.__setattr__(self, "metrics", replace(self.metrics, **not_numbers))

    @property
    def task(self) -> str:
        """``causal-lm`` or ``sequence-classification``: the kind of its metrics."""
        return self.metrics.task

    def metric(self, name: str):
        """The metric ``name``, or None where this task does not measure it
        (a classifier has no perplexity) or this run did not."""
        return getattr(self.metrics, name, None)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["metrics"] = metrics_to_dict(self.metrics)
        data["task"] = self.task
        return json.loads(json.dumps(data))  # deep, plain copies of dicts and lists

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        """A record from ``to_dict`` output or an older ``runs.jsonl`` line;
        unknown keys (a later version's) are ignored."""
        task = data.get("task", CAUSAL_LM)
        part = data.get("metrics")
        if not isinstance(part, dict):  # before the split: metrics at the top level
            part = {k: v for k, v in data.items() if k in FLAT_FIELDS}
        known = {f.name for f in fields(cls)} - {"metrics"}
        kept = {k: v for k, v in data.items() if k in known}
        record = cls(**kept, metrics=metrics_from_dict(task, part))
        return record if record.broken else _with_collapse_flagged(record)

    @property
    def is_original(self) -> bool:
        """The loaded model as it is, run by PyTorch: what everything is compared with."""
        return not self.recipe.get("passes") and self.backend == "torch"


def _with_collapse_flagged(record: RunRecord) -> RunRecord:
    """A line stored before ``broken`` existed (or merged from elsewhere)
    whose numbers collapsed: flagged by the same rule a job applies, so no
    view shows it plain."""
    from core.evaluate.health import broken_cause

    broken = broken_cause(
        record.metrics.agreement, record.metric("ppl_ratio"), record.recipe, record.backend
    )
    return replace(record, broken=broken) if broken else record


def identified(record: RunRecord) -> RunRecord:
    """``record`` with its run ID (from its time) if it has none yet."""
    return record if record.run_id else replace(record, run_id=f"{record.created:.6f}")


def data_dir() -> Path:
    override = os.environ.get("WORKBENCH_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("compression-workbench"))


class ResultsStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "runs.jsonl"
        self.skipped = 0  # lines the last load() could not read

    def append(self, record: RunRecord) -> RunRecord:
        record = identified(record)
        append_json_line(self.path, record.to_dict())
        return record

    def check_writable(self) -> None:
        """OSError now, before a run is measured, if it could not be stored."""
        check_appendable(self.path)

    def load(self) -> list[RunRecord]:
        """Every record that reads back; a line that does not (cut short by a
        kill, bytes that are not UTF-8, values of the wrong type:
        core.results.record_check) is skipped and counted in ``skipped``."""
        self.skipped = 0
        if not self.path.exists():
            return []
        require_regular_file(self.path)
        records = []
        text = self.path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                data = json.loads(line, parse_constant=_refuse_constant)
            except (ValueError, RecursionError):
                data = None
            if record_problem(data) is not None:
                self.skipped += 1
                continue
            records.append(RunRecord.from_dict(data))
        return records


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a record holds")
