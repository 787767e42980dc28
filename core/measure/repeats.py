"""The measurement protocol's stopping rule, shared by every benchmark:
warm-up runs first (discarded), then timed runs until both a minimum count
and a minimum time are reached, capped at a maximum count."""

from __future__ import annotations

import time
from collections.abc import Iterator

from core.measure.memory import PeakMemoryTracker


def check_repeats(settings) -> None:
    """Refuse settings the rule cannot follow (fields: warmup, min_repeats,
    min_time_s, max_repeats)."""
    if not 1 <= settings.min_repeats <= settings.max_repeats or settings.warmup < 0:
        raise ValueError("need 1 <= min_repeats <= max_repeats and warmup >= 0")


def protocol_runs(settings, tracker: PeakMemoryTracker) -> Iterator[tuple[int, bool]]:
    """Yield (run index, is warm-up) until the rule is met; the caller does
    one run per item. Peak memory tracking starts at the first timed run."""
    run, timed, started = 0, 0, 0.0
    while True:
        warmup = run < settings.warmup
        if not warmup and timed == 0:
            tracker.start()
            started = time.perf_counter()
        yield run, warmup
        run += 1
        if warmup:
            continue
        timed += 1
        long_enough = time.perf_counter() - started >= settings.min_time_s
        if (timed >= settings.min_repeats and long_enough) or timed >= settings.max_repeats:
            return
