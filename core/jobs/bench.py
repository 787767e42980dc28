"""The Bench job: the speed protocol on a loaded model (decode and prefill
for a causal LM, batch-1 latency for a classifier), refused before any run
when the asked length does not fit the model's context."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.progress import CancelToken, ProgressSink, ignore_progress


@dataclass(frozen=True)
class BenchRequest:
    loaded: object  # core.models.loading.LoadedModel, on the runtime it is timed on
    prompt_tokens: int = 128
    new_tokens: int = 64
    warmup: int = 1
    min_repeats: int = 5
    min_time_s: float = 5.0
    max_repeats: int = 50

    def lm_settings(self):
        """The causal-LM protocol's settings (refuses inconsistent counts)."""
        from core.measure.speed import BenchSettings

        return BenchSettings(
            prompt_tokens=self.prompt_tokens,
            new_tokens=self.new_tokens,
            warmup=self.warmup,
            min_repeats=self.min_repeats,
            min_time_s=self.min_time_s,
            max_repeats=self.max_repeats,
        )


def check_context(loaded, tokens: int) -> None:
    """Refuse a benchmark longer than the model's context (it would fail, or
    time positions the model was never trained for)."""
    from core.runtime.generation import context_length

    limit = context_length(loaded.model.config)
    if tokens > limit:
        raise ValueError(
            f"--prompt-tokens + --new-tokens is {tokens}, over the model's {limit}-token context"
        )


def bench(
    request: BenchRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield each timed run, then the BenchResult (or ClassifierBenchResult:
    each model kind has its own protocol, core.jobs.tasks)."""
    from core.jobs.tasks import task_for

    yield from task_for(request.loaded).bench(request, cancel)
