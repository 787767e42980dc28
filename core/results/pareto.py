"""The trade-off (Pareto) front: configurations no other one beats on both
axes at once (lower is better on both)."""

from __future__ import annotations


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_y = [], float("inf")
    for i in order:
        if points[i][1] < best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def reference_run(records: list):
    """The run a front is drawn against: the latest original timed on a
    quiet machine, else the latest original, else the latest run (None: no runs)."""
    originals = [r for r in records if r.is_original]
    quiet = [r for r in originals if not r.machine_busy]
    pool = quiet or originals or list(records)
    return max(pool, key=lambda r: r.created) if pool else None


def why_off_front(record, reference, metrics: tuple[str, ...]) -> str:
    """Why ``record`` cannot stand on a front with ``reference`` on these
    metrics ("" when it can): collapsed, or measured otherwise (other
    threads, protocol, text, model, or a busy machine:
    core.measure.compare.incomparable). A front mixing those would rank
    a protocol rather than a configuration."""
    from core.measure.compare import incomparable

    if record.broken:
        return "broken: its quality collapsed"
    for name in metrics:
        if why := incomparable(record, reference, name):
            return why
    return ""
