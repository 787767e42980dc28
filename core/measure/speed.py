"""The measurement protocol every speed number in the workbench comes from.

One run = prefill of a fixed prompt (time to first token) + greedy decode of
a fixed number of tokens with the KV cache, stop tokens ignored so every run
does the same work. Warm-up runs are discarded; then runs repeat until both a
minimum count and a minimum time are reached (capped). Prefill and decode are
reported apart as median, p10 and p90 over runs; decode is the mean step time
of a run's tokens after the first. Peak memory covers the timed runs. The
environment (device, dtype, threads, versions) travels with every result, and
so does other programs' CPU load around the timed runs
(``core.measure.machine_load``): a result timed on a busy machine says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.measure.environment import Environment, current_environment
from core.measure.machine_load import MachineLoad, MachineLoadMonitor
from core.measure.memory import PeakMemoryTracker
from core.measure.repeats import check_repeats, protocol_runs
from core.measure.result_parts import MeasuredUnder, Spread, bench_prompt_text
from core.models.loading import LoadedModel, require_causal_lm
from core.progress import CancelToken
from core.runtime.device import synchronize
from core.runtime.runners import COMPILED_RUNNER, is_onnx_runtime, runner_name, steps_function
from core.runtime.torch_runner import TokenStep


@dataclass(frozen=True)
class BenchSettings:
    prompt_tokens: int = 128
    new_tokens: int = 64
    warmup: int = 1
    min_repeats: int = 5
    min_time_s: float = 5.0
    max_repeats: int = 50

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.new_tokens < 2:
            raise ValueError("need at least 1 prompt token and 2 new tokens")
        check_repeats(self)

    def describe(self) -> str:
        return (
            f"prompt {self.prompt_tokens} tok, decode {self.new_tokens} tok greedy, "
            f"{self.warmup} warm-up, >= {self.min_repeats} runs and >= {self.min_time_s:g} s, "
            "median [p10, p90]"
        )


@dataclass(frozen=True)
class RunTiming:
    """One timed (or warm-up) run."""

    run: int
    warmup: bool
    prefill_ms: float
    decode_ms_per_token: float


@dataclass(frozen=True)
class BenchResult(MeasuredUnder):
    prefill_ms: Spread
    decode_ms_per_token: Spread
    tokens_per_s: float  # 1000 / median decode ms per token
    peak_memory_bytes: int | None  # None: not measured (peak_memory_kind says why)
    peak_memory_kind: str
    runs: int
    settings: BenchSettings
    protocol: str
    environment: Environment
    machine_load: MachineLoad | None = None  # other programs' CPU use around the timed runs

    def to_dict(self) -> dict:
        """Flat JSON: medians under the plain names, spreads beside them."""
        return {
            "prefill_ms": self.prefill_ms.median,
            "prefill_ms_p10": self.prefill_ms.p10,
            "prefill_ms_p90": self.prefill_ms.p90,
            "decode_ms_per_token": self.decode_ms_per_token.median,
            "decode_ms_per_token_p10": self.decode_ms_per_token.p10,
            "decode_ms_per_token_p90": self.decode_ms_per_token.p90,
            "tokens_per_s": self.tokens_per_s,
            **self.conditions_dict(),
        }


def timing_device(loaded: LoadedModel):
    """The device that runs the model: for ONNX Runtime the session's own
    (its provider), not the CPU its logits come back on."""
    return loaded.model.device if is_onnx_runtime(loaded.model) else loaded.device


def bench_prompt_ids(loaded: LoadedModel, n_tokens: int):
    """The fixed benchmark prompt, cut or repeated to exactly ``n_tokens``."""
    ids = loaded.tokenizer(bench_prompt_text(), return_tensors="pt").input_ids[0]
    while ids.numel() < n_tokens:
        ids = ids.repeat(2)
    return ids[:n_tokens].unsqueeze(0).to(loaded.device)


def benchmark(
    loaded: LoadedModel,
    settings: BenchSettings = BenchSettings(),
    cancel: CancelToken | None = None,
) -> Iterator[TokenStep | RunTiming | BenchResult]:
    """Run the protocol, yielding each token step and each run as it finishes,
    then the BenchResult. A classifier has its own protocol
    (core.measure.classifier_speed)."""
    require_causal_lm(loaded, "the prefill/decode benchmark")
    cancel = cancel or CancelToken()
    device = loaded.device  # where inputs live (ONNX Runtime: the CPU it returns logits to)
    input_ids = bench_prompt_ids(loaded, settings.prompt_tokens)
    runs_on = timing_device(loaded)
    tracker = PeakMemoryTracker(runs_on, onnx_runtime=is_onnx_runtime(loaded.model))
    generate_steps = steps_function(loaded.model, loaded.runner)  # every runner, one protocol
    if loaded.runner == COMPILED_RUNNER:  # compile before any run, so no run times it
        from core.runtime.compiled_runner import compile_decode

        compile_decode(loaded.model, settings.prompt_tokens + settings.new_tokens)
    timings: list[RunTiming] = []
    load = MachineLoadMonitor()
    load.start()
    for run, warmup in protocol_runs(settings, tracker):
        steps: list[TokenStep] = []
        synchronize(device)
        for step in generate_steps(
            loaded.model, input_ids, settings.new_tokens, stop_ids=frozenset(), cancel=cancel
        ):
            steps.append(step)
            yield step
        cancel.raise_if_cancelled()
        decode = steps[1:]
        timing = RunTiming(
            run=run,
            warmup=warmup,
            prefill_ms=steps[0].step_s * 1e3,
            decode_ms_per_token=sum(s.step_s for s in decode) / len(decode) * 1e3,
        )
        yield timing
        if not warmup:
            timings.append(timing)
    machine_load = load.stop()
    peak = tracker.stop()
    decode_spread = Spread.of([t.decode_ms_per_token for t in timings])
    yield BenchResult(
        prefill_ms=Spread.of([t.prefill_ms for t in timings]),
        decode_ms_per_token=decode_spread,
        tokens_per_s=1e3 / decode_spread.median,
        peak_memory_bytes=peak.bytes,
        peak_memory_kind=peak.kind,
        runs=len(timings),
        settings=settings,
        protocol=settings.describe(),
        environment=current_environment(
            runs_on, loaded.model.dtype, runner_name(loaded.model, loaded.runner)
        ),
        machine_load=machine_load,
    )


def run_benchmark(loaded: LoadedModel, settings: BenchSettings = BenchSettings(), cancel=None):
    """The protocol without the live events: just the BenchResult."""
    result = None
    for event in benchmark(loaded, settings, cancel):
        result = event
    assert isinstance(result, BenchResult)
    return result
