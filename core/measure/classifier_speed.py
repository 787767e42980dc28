"""The speed protocol for a sequence classifier (an encoder: no decode loop).

One run = one forward pass classifying one fixed input of ``tokens`` tokens
at batch 1 (the benchmark prompt cut to that length, [CLS] and [SEP]
included; the default 64 is the demo classifier's maximum length, which
review snippets rarely reach, so it is the worst case a review costs).
Warm-up runs are discarded; then runs repeat until both a minimum count and
a minimum time are reached (capped). Latency is reported as median, p10 and
p90 over runs; examples/s is 1000 / median ms (batch 1, one after another).
Peak memory covers the timed runs. The environment travels with the result,
and so does other programs' CPU load around the timed runs (``core.measure.machine_load``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from core.measure.environment import Environment, current_environment
from core.measure.machine_load import MachineLoad, MachineLoadMonitor
from core.measure.memory import PeakMemoryTracker
from core.measure.repeats import check_repeats, protocol_runs
from core.measure.result_parts import MeasuredUnder, Spread, bench_prompt_text
from core.models.loading import LoadedModel
from core.progress import CancelToken
from core.runtime.device import synchronize
from core.runtime.runners import TORCH_RUNNER


@dataclass(frozen=True)
class ClassifierBenchSettings:
    tokens: int = 64
    warmup: int = 3
    min_repeats: int = 20
    min_time_s: float = 2.0
    max_repeats: int = 500

    def __post_init__(self) -> None:
        if self.tokens < 3:
            raise ValueError("need at least 3 tokens ([CLS], one word, [SEP])")
        check_repeats(self)

    def describe(self) -> str:
        return (
            f"classify one {self.tokens}-token input at batch 1, {self.warmup} warm-up, "
            f">= {self.min_repeats} runs and >= {self.min_time_s:g} s, median [p10, p90]"
        )


@dataclass(frozen=True)
class ClassificationTiming:
    """One timed (or warm-up) forward pass."""

    run: int
    warmup: bool
    ms: float


@dataclass(frozen=True)
class ClassifierBenchResult(MeasuredUnder):
    latency_ms: Spread
    examples_per_s: float  # 1000 / median ms, batch 1
    peak_memory_bytes: int
    peak_memory_kind: str
    runs: int
    settings: ClassifierBenchSettings
    protocol: str
    environment: Environment
    machine_load: MachineLoad | None = None  # other programs' CPU use around the timed runs

    def to_dict(self) -> dict:
        return {
            "latency_ms": self.latency_ms.median,
            "latency_ms_p10": self.latency_ms.p10,
            "latency_ms_p90": self.latency_ms.p90,
            "examples_per_s": self.examples_per_s,
            **self.conditions_dict(),
        }


def bench_input(loaded: LoadedModel, tokens: int) -> dict:
    """The fixed input: the benchmark prompt encoded and cut to exactly ``tokens``."""
    encoded = loaded.tokenizer(
        bench_prompt_text(), truncation=True, max_length=tokens, return_tensors="pt"
    )
    if encoded.input_ids.shape[1] != tokens:
        raise ValueError(f"the benchmark prompt is shorter than {tokens} tokens")
    return {k: v.to(loaded.device) for k, v in encoded.items()}


@torch.inference_mode()
def benchmark_classifier(
    loaded: LoadedModel,
    settings: ClassifierBenchSettings = ClassifierBenchSettings(),
    cancel: CancelToken | None = None,
) -> Iterator[ClassificationTiming | ClassifierBenchResult]:
    """Run the protocol, yielding each run as it finishes, then the result."""
    cancel = cancel or CancelToken()
    device = loaded.device
    inputs = bench_input(loaded, settings.tokens)
    tracker = PeakMemoryTracker(device)
    timings: list[float] = []
    load = MachineLoadMonitor()
    load.start()
    for run, warmup in protocol_runs(settings, tracker):
        cancel.raise_if_cancelled()
        synchronize(device)
        t0 = time.perf_counter()
        loaded.model(**inputs)
        synchronize(device)
        ms = (time.perf_counter() - t0) * 1e3
        yield ClassificationTiming(run, warmup, ms)
        if not warmup:
            timings.append(ms)
    machine_load = load.stop()
    peak = tracker.stop()
    latency = Spread.of(timings)
    yield ClassifierBenchResult(
        latency_ms=latency,
        examples_per_s=1e3 / latency.median,
        peak_memory_bytes=peak.bytes,
        peak_memory_kind=peak.kind,
        runs=len(timings),
        settings=settings,
        protocol=settings.describe(),
        environment=current_environment(device, loaded.model.dtype, TORCH_RUNNER),
        machine_load=machine_load,
    )
