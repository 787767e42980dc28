"""Which scored candidates are measured, and in what order.

The proxy ranks; measurement decides. For a quality objective (perplexity,
KL, accuracy) candidates are measured by ascending proxy KL, siblings that
share a proxy (calibrated int4 methods scored by one RTN twin) in the order
of their prior. For size, by the size estimate (exact: tests check it
against measured sizes). For speed, which no proxy predicts, by the size
estimate too, smallest first, and nothing is skipped.

A candidate is skipped when it cannot plausibly beat the best measured so
far: for size, an estimate no smaller; for quality, a proxy KL more than
``EXACT_MARGIN`` times the best's proxy (``TWIN_MARGIN`` when the
candidate's proxy is an RTN twin, which overstates a calibrated method's
error). The margins are judgement, not fitted: dev-split KL over two
windows moves by tens of percent between close recipes, and at g128 RTN's
perplexity increase was 1.9-4.5x the calibrated methods' on the default
model (benchmarks/results/int4_quality_cpu_2core.txt).
"""

from __future__ import annotations

from dataclasses import dataclass

EXACT_MARGIN = 1.5
TWIN_MARGIN = 4.0
# A proxy this far over a quality limit is rejected without measuring: the
# dev windows are few and differ from the report windows, hence the slack.
LIMIT_SLACK = 2.0

QUALITY_OBJECTIVES = ("ppl", "kl", "accuracy")


@dataclass
class Scored:
    """A candidate with what is known of it so far."""

    candidate: object  # core.search.candidates.Candidate
    estimated_bytes: int
    proxy: object = None  # ProxyScore, or None when the model kind has no proxy
    measured: bool = False  # found in the run store


def promotion_order(items: list[Scored], objective_key: str) -> list[Scored]:
    if objective_key in QUALITY_OBJECTIVES:

        def key(item: Scored):
            kl = item.proxy.kl if item.proxy is not None else float("inf")
            return (kl, item.candidate.prior, item.estimated_bytes)

    else:

        def key(item: Scored):
            kl = item.proxy.kl if item.proxy is not None else float("inf")
            return (item.estimated_bytes, kl, item.candidate.prior)

    return sorted(items, key=key)


def cannot_win(item: Scored, best: Scored | None, best_record, objective_key: str) -> str | None:
    """Why measuring ``item`` cannot beat the best measured so far (None: it might)."""
    if best_record is None:
        return None
    if objective_key == "bytes" and item.estimated_bytes >= best_record.bytes:
        return (
            f"estimated {item.estimated_bytes / 1e6:.1f} MB, no smaller than the best "
            f"measured ({best_record.bytes / 1e6:.1f} MB)"
        )
    if objective_key in QUALITY_OBJECTIVES and best is not None:
        if item.proxy is None or best.proxy is None:
            return None
        margin = TWIN_MARGIN if item.candidate.proxy_is_twin else EXACT_MARGIN
        if item.proxy.kl > margin * best.proxy.kl:
            return (
                f"proxy KL {item.proxy.kl:.4g} > {margin:g}x the best measured "
                f"candidate's ({best.proxy.kl:.4g})"
            )
    return None


def proxy_rejection(item: Scored, limits) -> str | None:
    """Why ``item``'s proxy alone rules it out (None: keep it). Only an exact
    proxy can rule out: an RTN twin overstates a calibrated method's error."""
    proxy = item.proxy
    if proxy is None or item.candidate.proxy_is_twin:
        return None
    if limits.max_kl is not None and proxy.kl > LIMIT_SLACK * limits.max_kl:
        return f"proxy KL {proxy.kl:.4g} on dev > {LIMIT_SLACK:g}x the limit {limits.max_kl:g}"
    if limits.max_ppl_increase_pct is not None:
        increase = (proxy.ppl_ratio - 1) * 100
        if increase > LIMIT_SLACK * limits.max_ppl_increase_pct:
            return (
                f"proxy perplexity +{increase:.1f}% on dev > {LIMIT_SLACK:g}x the limit "
                f"+{limits.max_ppl_increase_pct:g}%"
            )
    return None
