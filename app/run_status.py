"""How a run's health shows in the window: broken (its quality collapsed,
filled in by core.evaluate.health) and busy machine (its timings were taken
while other programs loaded the CPU). One wording and one set of colours for
the table, the compare view and the trade-off chart."""

from __future__ import annotations

from core.evaluate.health import RUNNER_UP
from core.results.store import RunRecord

BROKEN_COLOR = "#b00020"  # a broken run's mark: dark red
BROKEN_TINT = "#fbe3e6"  # the rest of its row
BUSY_COLOR = "#f0ad00"  # amber: timings from a busy machine


def status_text(r: RunRecord) -> str:
    """ "broken" and/or "busy machine"; empty for a healthy run on a quiet machine."""
    marks = (("broken", r.broken), ("busy machine", r.machine_busy))
    return " · ".join(mark for mark, on in marks if on)


def status_detail(r: RunRecord) -> str:
    """Why: the causes, one per line; empty when there is nothing to say."""
    lines = []
    if r.broken:
        lines.append(f"BROKEN: {r.broken}")
    if r.machine_busy:
        lines.append(f"Timed on a busy machine: {r.machine_busy}")
    return "\n".join(lines)


def short_cause(cause: str, limit: int = 60) -> str:
    """A chart label's part of a cause: core writes "collapsed: <numbers>;
    likely cause: <setting>", and the setting is what a reader acts on (the
    numbers are in the table and the hover text)."""
    _, found, likely = cause.partition("likely cause: ")
    text = likely.split(RUNNER_UP)[0] if found else cause  # the runner-up: hover only
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
