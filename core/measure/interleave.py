"""Side-by-side speed of several configurations in one process, the way every
benchmark script compares them: one untimed run each, then rounds in which
each configuration runs once, the order rotating every round, so the drift
this kind of machine shows over minutes (tens of percent) hits all alike.
Medians over rounds are what the scripts report."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from core.measure.speed import BenchSettings, run_benchmark
from core.models.loading import LoadedModel

# One run of the protocol per configuration per round.
ONE_RUN = BenchSettings(prompt_tokens=128, new_tokens=32, warmup=0, min_repeats=1, min_time_s=0)


@dataclass
class RoundTimes:
    """Per configuration, one value per round."""

    prefill_ms: dict[Hashable, list[float]] = field(default_factory=dict)
    decode_ms_per_token: dict[Hashable, list[float]] = field(default_factory=dict)


def interleaved_rounds(
    configurations: dict[Hashable, LoadedModel],
    rounds: int,
    settings: BenchSettings = ONE_RUN,
    on_round: Callable[[int], None] = lambda done: None,
) -> RoundTimes:
    keys = list(configurations)
    for key in keys:  # warm-up, not counted
        run_benchmark(configurations[key], settings)
    times = RoundTimes({k: [] for k in keys}, {k: [] for k in keys})
    for r in range(rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            result = run_benchmark(configurations[key], settings)
            times.prefill_ms[key].append(result.prefill_ms.median)
            times.decode_ms_per_token[key].append(result.decode_ms_per_token.median)
        on_round(r + 1)
    return times
