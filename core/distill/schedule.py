"""The learning rate as a pure function of how far training has got, so a
resumed run continues the same curve. Progress is the larger of
steps done / step budget and seconds trained / time budget: with a time
budget the cosine decay finishes when the time runs out, whatever speed the
machine has. (torch's LR schedulers count steps only, hence this function.)"""

from __future__ import annotations

import math


def progress_fraction(
    step: int, train_seconds: float, steps: int | None, time_budget_s: float | None
) -> float:
    parts = []
    if steps:
        parts.append(step / steps)
    if time_budget_s:
        parts.append(train_seconds / time_budget_s)
    return min(1.0, max(parts)) if parts else 0.0


def learning_rate(
    peak: float, step: int, progress: float, warmup_steps: int, final_fraction: float
) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``peak`` down to
    ``final_fraction * peak`` as progress goes from 0 to 1."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return peak * warm * (final_fraction + (1 - final_fraction) * cosine)
