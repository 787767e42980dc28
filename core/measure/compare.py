"""When one measured speed may be called faster than another: the one rule
every view (trade-off chart, comparison table, side by side, report, CLI)
uses. Each timed number carries its spread, p10 to p90 of the protocol's
runs; B is faster or slower than A only when the two ranges do not overlap.
Overlapping ranges are "within noise", and a number stored without its
spread is never called faster, whatever its median says."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

FASTER, SLOWER, WITHIN_NOISE, NO_SPREAD = "faster", "slower", "within noise", "no spread recorded"

# A timed metric -> the metrics that hold its p10 and p90.
SPREAD_FIELDS = {
    "decode_ms_per_token": ("decode_ms_p10", "decode_ms_p90"),
    "latency_ms": ("latency_ms_p10", "latency_ms_p90"),
}
# A rate -> the time it is the inverse of (per second = 1000 / ms): its
# p10 is 1000 / the time's p90 and its p90 1000 / the time's p10.
RATE_OF = {"tokens_per_s": "decode_ms_per_token", "examples_per_s": "latency_ms"}


@dataclass(frozen=True)
class SpeedRange:
    """A timed number: its median and its p10 to p90 range, in its own unit."""

    median: float
    p10: float
    p90: float
    lower_is_better: bool = True  # ms: lower is faster; a rate (tokens/s): higher

    def overlaps(self, other: SpeedRange) -> bool:
        return self.p10 <= other.p90 and other.p10 <= self.p90

    def text(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} [p10 {self.p10:.{digits}f}, p90 {self.p90:.{digits}f}]"


def speed_range(metric: Callable[[str], float | None], name: str) -> SpeedRange | None:
    """``name``'s range from a run's metrics (``metric`` is ``RunRecord.metric``);
    None where the run stored the number without its spread, or not at all."""
    if name in RATE_OF:
        time = speed_range(metric, RATE_OF[name])
        rate = metric(name)
        if time is None or rate is None or time.p10 <= 0:
            return None
        return SpeedRange(rate, 1000 / time.p90, 1000 / time.p10, lower_is_better=False)
    if name not in SPREAD_FIELDS:
        return None
    median, p10, p90 = metric(name), *(metric(f) for f in SPREAD_FIELDS[name])
    if median is None or p10 is None or p90 is None:
        return None
    return SpeedRange(median, p10, p90)


def steps_range(step_ms: list[float]) -> SpeedRange | None:
    """The range of one generation's per-token times (ms): what the side by
    side demo has instead of repeated runs."""
    if len(step_ms) < 2:
        return None
    deciles = statistics.quantiles(step_ms, n=10, method="inclusive")
    return SpeedRange(statistics.median(step_ms), deciles[0], deciles[-1])


def speed_verdict(a: SpeedRange | None, b: SpeedRange | None) -> str:
    """B against A: FASTER or SLOWER only when their p10-p90 ranges are
    apart; WITHIN_NOISE when they overlap; NO_SPREAD when either has none."""
    if a is None or b is None:
        return NO_SPREAD
    if a.overlaps(b):
        return WITHIN_NOISE
    b_lower = b.p90 < a.p10
    return FASTER if b_lower == b.lower_is_better else SLOWER


def ratio_verdict_text(a: SpeedRange | None, b: SpeedRange | None, ratio: float | None) -> str:
    """ "0.612x, faster", "0.981x, within noise", "1.050x, no spread recorded":
    the ratio B / A of the medians, never without what the ranges allow."""
    if ratio is None:
        return "–"
    return f"{ratio:.3f}x, {speed_verdict(a, b)}"


# Metrics a clock measures: comparable only on the same device, threads and protocol.
TIMED_METRICS = (
    "prefill_ms", "decode_ms_per_token", "tokens_per_s", "latency_ms", "examples_per_s",
)  # fmt: skip


def incomparable(run, baseline, name: str) -> str | None:
    """Why ``run``'s ``name`` cannot be divided by ``baseline``'s, or None: a
    speed timed on another device, thread count or protocol, or on a busy
    machine; a quality score on other windows or text, or of another model
    (its own tokens, against its own original)."""
    if run is None or baseline is None or name == "bytes":
        return None
    if name in TIMED_METRICS:
        if (run.device, run.threads) != (baseline.device, baseline.threads):
            return (
                f"timed on {baseline.device}, {baseline.threads} threads against "
                f"{run.device}, {run.threads}"
            )
        if run.bench_protocol != baseline.bench_protocol:
            return "timed under another protocol"
        if run.machine_busy and baseline.machine_busy:
            return "both were timed on a busy machine"
        if run.machine_busy or baseline.machine_busy:
            return "one of them was timed on a busy machine"
        return None
    if run.model != baseline.model:
        return "scored on another model (its own tokens, against its own original)"
    if not same_model_files(run, baseline):
        return "scored on other files of this model (its folder changed between the runs)"
    if run.eval_protocol != baseline.eval_protocol:
        return "scored on other windows or text"
    return None


def same_model_files(run, baseline) -> bool:
    """Both runs measured the same files of their folder (core.models.
    source_identity.same_files: a run without a digest is taken on its name)."""
    from core.models.source_identity import DIGEST_KEY, same_files

    theirs = (getattr(baseline, "artifact", None) or {}).get(DIGEST_KEY, "")
    return same_files(getattr(run, "artifact", None) or {}, theirs)
