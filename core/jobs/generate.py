"""The Generate job: stream a model's answer to a prompt, token by token,
each timed; the summary says tokens/s of the generation alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from core.progress import CancelToken, Progress, ProgressSink, ignore_progress


def _greedy():
    from core.runtime.sampling import GREEDY

    return GREEDY


@dataclass(frozen=True)
class GenerateRequest:
    loaded: object  # core.models.loading.LoadedModel, on the runtime it will run on
    prompt: str
    max_new_tokens: int = 64
    sampling: object = field(default_factory=_greedy)  # core.runtime.sampling.Sampling
    chat: bool = False  # wrap the prompt in the tokenizer's chat template
    threads: int | None = None


def generate(
    request: GenerateRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield a TextToken per token, then the GenerationSummary."""
    from core.runtime.device import set_threads
    from core.runtime.generation import stream_generation

    if request.max_new_tokens < 1:
        raise ValueError("max new tokens must be at least 1")
    set_threads(request.threads)
    progress(Progress("Generating", None))
    yield from stream_generation(
        request.loaded,
        request.prompt,
        request.max_new_tokens,
        request.sampling,
        request.chat,
        cancel,
    )
