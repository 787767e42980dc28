"""The Generate job: stream a model's answer to a prompt, token by token,
each timed; the summary says tokens/s of the generation alone. With beam
search, each search step is streamed and timed, and the answer comes at the
end (core/runtime/beam_generation.py)."""

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
    # core.runtime.beam_search.BeamSearch: beam search instead of one token
    # at a time (deterministic, so ``sampling`` must be greedy); None: off.
    beam_search: object = None
    # core.runtime.prompt_lookup.PromptLookup: greedy tokens drafted from the
    # text so far and verified in one step (the same answer); None: off.
    lookup: object = None


def check_lookup(sampling, beam_search, lookup, runner: str) -> None:
    """Refuse what prompt lookup cannot do, in one line, before a model loads."""
    from core.runtime.runners import COMPILED_RUNNER, LOOKUP_REFUSAL

    if lookup is None:
        return
    if not sampling.greedy:
        raise ValueError(
            "prompt lookup keeps the model's greedy answer (a draft is kept where it agrees "
            "with the model's best token): set temperature 0, or sample without it"
        )
    if beam_search is not None:
        raise ValueError("prompt lookup and beam search do not combine: choose one")
    if runner == COMPILED_RUNNER:
        raise ValueError(LOOKUP_REFUSAL)


def check_beam_search(sampling, beam_search, onnx: bool) -> None:
    """Refuse what beam search cannot do here, in one line; the CLI calls it
    before a model loads (``onnx``: the runtime is ONNX Runtime)."""
    if beam_search is None:
        return
    if not sampling.greedy:
        raise ValueError(
            "beam search here picks the most likely beams (transformers' do_sample=False): "
            "set temperature 0, or sample with 1 beam"
        )
    if onnx:
        from core.runtime.beam_generation import ONNX_REFUSAL

        raise ValueError(ONNX_REFUSAL)


def generate(
    request: GenerateRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield a TextToken per token, then the GenerationSummary."""
    from core.runtime.device import set_threads
    from core.runtime.generation import stream_generation
    from core.runtime.runners import is_onnx_runtime

    if request.max_new_tokens < 1:
        raise ValueError("max new tokens must be at least 1")
    check_beam_search(request.sampling, request.beam_search, is_onnx_runtime(request.loaded.model))
    check_lookup(request.sampling, request.beam_search, request.lookup, request.loaded.runner)
    set_threads(request.threads)
    progress(Progress("Generating", None))
    yield from stream_generation(
        request.loaded,
        request.prompt,
        request.max_new_tokens,
        request.sampling,
        request.chat,
        cancel,
        request.beam_search,
        request.lookup,
    )
