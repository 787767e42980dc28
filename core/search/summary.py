"""The search's events folded into one JSON-able account: every candidate
with its estimate, proxy, rejection or measurement, the original and the
best. `workbench search --json` prints it; the benchmark reads it."""

from __future__ import annotations

from core.search.events import (
    BestSoFar,
    CandidateMeasured,
    CandidateProposed,
    CandidateRejected,
    CandidateScored,
    LayersRanked,
    ReferenceMeasured,
    SearchFinished,
    SearchNote,
    SearchStarted,
)


def record_part(record, ppl_increase_pct=None, bytes_ratio=None) -> dict:
    """What the account shows of a RunRecord (every number as measured)."""
    part = {
        "run_id": record.run_id,
        "recipe_name": record.recipe_name,
        "recipe": record.recipe,
        "backend": record.backend,
        "bytes": record.bytes,
        "metrics": record.to_dict()["metrics"],
        "eval_protocol": record.eval_protocol,
        "bench_protocol": record.bench_protocol,
        "broken": record.broken,
        "machine_busy": record.machine_busy,
    }
    if bytes_ratio is not None:
        part["bytes_ratio"] = round(bytes_ratio, 5)
    if ppl_increase_pct is not None:
        part["ppl_increase_pct"] = round(ppl_increase_pct, 4)
    return part


class SearchSummary:
    def __init__(self) -> None:
        self.started: SearchStarted | None = None
        self.original: dict | None = None
        self.candidates: dict[str, dict] = {}
        self.ranking: dict | None = None
        self.notes: list[str] = []
        self.best: BestSoFar | None = None
        self.finished: SearchFinished | None = None

    def add(self, event) -> None:
        if isinstance(event, SearchStarted):
            self.started = event
        elif isinstance(event, ReferenceMeasured):
            self.original = record_part(event.record) | {"reused": event.reused}
        elif isinstance(event, CandidateProposed):
            self.candidates[event.key] = {
                "label": event.label,
                "family": event.family,
                "recipe": event.recipe,
                "estimated_bytes": event.estimated_bytes,
                "proxy": None,
                "rejected": None,
                "measured": None,
            }
        elif isinstance(event, CandidateScored) and event.key in self.candidates:
            self.candidates[event.key]["proxy"] = {
                "kl": event.kl,
                "ppl_ratio": event.ppl_ratio,
                "top1": event.top1,
                "rtn_twin": event.twin,
                "cached": event.cached,
                "seconds": round(event.seconds, 2),
            }
        elif isinstance(event, CandidateRejected) and event.key in self.candidates:
            self.candidates[event.key]["rejected"] = {"stage": event.stage, "reason": event.reason}
        elif isinstance(event, CandidateMeasured) and event.key in self.candidates:
            part = record_part(event.record, event.ppl_increase_pct, event.bytes_ratio)
            part |= {
                "reused": event.reused,
                "violations": list(event.violations),
                "seconds": round(event.seconds, 1),
            }
            self.candidates[event.key]["measured"] = part
        elif isinstance(event, SearchNote):
            self.notes.append(event.text)
        elif isinstance(event, LayersRanked):
            self.ranking = {
                "layers": list(event.layers),
                "kl": list(event.kl),
                "source": event.source,
            }
        elif isinstance(event, BestSoFar):
            self.best = event
        elif isinstance(event, SearchFinished):
            self.finished = event

    def to_dict(self) -> dict:
        started, finished, best = self.started, self.finished, self.best
        return {
            "objective": started.objective if started else None,
            "limits": started.limits if started else None,
            "byte_limit": started.byte_limit if started else None,
            "original_bytes": started.original_bytes if started else None,
            "scoring": started.scoring if started else None,
            "proxy": started.proxy if started else None,
            "budget_s": started.budget_s if started else None,
            "original": self.original,
            "best": (
                record_part(best.record, best.ppl_increase_pct, best.bytes_ratio)
                | {"label": best.label}
                if best
                else None
            ),
            "layer_ranking": self.ranking,
            "notes": self.notes,
            "candidates": list(self.candidates.values()),
            "stopped": finished.stopped if finished else "cancelled",
            "elapsed_s": round(finished.elapsed_s, 1) if finished else None,
            "counts": (
                {
                    "proposed": finished.proposed,
                    "scored": finished.scored,
                    "measured": finished.measured,
                    "reused": finished.reused,
                    "rejected": finished.rejected,
                }
                if finished
                else None
            ),
        }
