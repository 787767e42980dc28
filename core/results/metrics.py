"""What a run measured, one type per task: a causal LM's decode speed and
perplexity, a sequence classifier's batch-1 latency and accuracy. A
RunRecord carries exactly one of them (``RunRecord.metrics``), so no record
holds a column its model cannot have.

``FLAT_FIELDS`` lists the names older ``runs.jsonl`` lines kept at the top
level of a record (before this split); ``from_flat`` reads them back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from core.model_kinds import CAUSAL_LM, SEQUENCE_CLASSIFICATION


@dataclass(frozen=True)
class LMMetrics:
    """A causal LM run. Speeds are medians of the protocol's timed runs
    (p10/p90 beside decode); perplexity's 95% interval is exp() of one on the
    mean NLL, so it is not symmetric about ``ppl``: its ends are
    ``ppl_ci95_low``/``ppl_ci95_high`` and ``ppl_ci95`` is half their width.
    ``top1_agreement``, ``mean_kl`` and ``ppl_ratio`` compare with the
    original on the same tokens (1, 0 and 1 for the original itself)."""

    task: ClassVar[str] = CAUSAL_LM

    prefill_ms: float | None = None
    decode_ms_per_token: float | None = None
    tokens_per_s: float | None = None
    ppl: float | None = None
    ppl_ci95: float | None = None
    ppl_ci95_low: float | None = None
    ppl_ci95_high: float | None = None
    top1_agreement: float | None = None
    mean_kl: float | None = None
    ppl_ratio: float | None = None
    decode_ms_p10: float | None = None
    decode_ms_p90: float | None = None

    @property
    def agreement(self) -> float | None:
        """Agreement with the original: the number the broken flag reads."""
        return self.top1_agreement


@dataclass(frozen=True)
class ClassifierMetrics:
    """A sequence classifier run: batch-1 latency of one fixed input (ms,
    median with p10/p90), sentiment accuracy with its Wilson 95% interval
    (not symmetric, so both ends) over ``examples`` reviews, and agreement
    (same label as the original)."""

    task: ClassVar[str] = SEQUENCE_CLASSIFICATION

    latency_ms: float | None = None
    latency_ms_p10: float | None = None
    latency_ms_p90: float | None = None
    examples_per_s: float | None = None
    accuracy: float | None = None
    accuracy_ci95_low: float | None = None
    accuracy_ci95_high: float | None = None
    examples: int | None = None
    agreement: float | None = None


METRICS = {LMMetrics.task: LMMetrics, ClassifierMetrics.task: ClassifierMetrics}
FLAT_FIELDS = frozenset(f.name for kind in METRICS.values() for f in fields(kind))


def metrics_to_dict(metrics) -> dict:
    return asdict(metrics)


def metrics_from_dict(task: str, data: dict):
    """The metrics of ``task`` from ``data``, ignoring keys it does not know
    (a later version's fields, or the other task's empty columns)."""
    kind = METRICS.get(task)
    if kind is None:
        raise ValueError(f"unknown task {task!r}")
    known = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in known})
