"""What the Search job yields: SearchStarted; ReferenceMeasured (the
original, the yardstick of every increase); per candidate CandidateProposed,
then CandidateScored (its proxy) or CandidateRejected (why it was dropped,
at which stage), and for those promoted CandidateMeasured (the RunRecord;
a new record is yielded as a plain RunRecord first, so the window stores
and charts it as any run); LayersRanked once the sensitivity ranking for
mixed precision is known; SearchNote for a decision the log explains;
BestSoFar whenever the best record meeting the limits changes;
SearchFinished last. A cancel raises instead: everything
measured before it was already yielded."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchStarted:
    objective: str  # its title, e.g. "smallest perplexity increase"
    limits: str  # Limits.describe()
    byte_limit: int | None
    original_bytes: int
    scoring: str  # where proxies run, e.g. "Ray tasks on a cluster of 8 CPUs"
    proxy: str  # what a proxy score is (ProxySpec.describe())
    budget_s: float


@dataclass(frozen=True)
class ReferenceMeasured:
    record: object  # RunRecord of the original
    reused: bool


@dataclass(frozen=True)
class CandidateProposed:
    key: str
    label: str
    family: str
    recipe: dict
    estimated_bytes: int


@dataclass(frozen=True)
class CandidateScored:
    key: str
    label: str
    kl: float
    ppl_ratio: float
    top1: float
    twin: bool  # scored by its RTN twin (a calibrated int4 method)
    cached: bool  # found in the proxy cache
    seconds: float


@dataclass(frozen=True)
class CandidateRejected:
    key: str
    label: str
    stage: str  # "size", "runtime", "proxy", "promotion", "measurement", "budget"
    reason: str


@dataclass(frozen=True)
class CandidateMeasured:
    key: str
    label: str
    record: object  # RunRecord
    reused: bool  # found in the run store, not measured again
    violations: tuple[str, ...]  # why it fails the limits (empty: it meets them)
    ppl_increase_pct: float | None
    bytes_ratio: float
    seconds: float


@dataclass(frozen=True)
class SearchNote:
    text: str  # a decision the log should explain (one line)


@dataclass(frozen=True)
class LayersRanked:
    layers: tuple[int, ...]  # most sensitive first
    kl: tuple[float, ...]  # each layer's probe KL, in the same order
    source: str  # how the ranking was made


@dataclass(frozen=True)
class BestSoFar:
    key: str
    label: str
    record: object  # RunRecord
    value: float | None  # the objective's number
    ppl_increase_pct: float | None
    bytes_ratio: float


@dataclass(frozen=True)
class SearchFinished:
    best: BestSoFar | None
    stopped: str  # "every candidate considered" or "time budget"
    elapsed_s: float
    proposed: int
    scored: int
    measured: int  # newly measured here
    reused: int  # taken from the run store
    rejected: int


SEARCH_EVENTS = (
    SearchStarted,
    ReferenceMeasured,
    CandidateProposed,
    CandidateScored,
    CandidateRejected,
    CandidateMeasured,
    SearchNote,
    LayersRanked,
    BestSoFar,
    SearchFinished,
)
