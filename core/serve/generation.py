"""One request's generation on the model thread: our token loop (the same
runners, sampling and incremental decoding as the Generate job), stop
sequences, and events handed to the request as each token comes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.progress import CancelToken


@dataclass(frozen=True)
class Token:
    text: str  # what it adds to the answer (may be empty: a partial character, a stop token)
    tokens: int = 1  # generated tokens it stands for (0: text held back until the end)


@dataclass(frozen=True)
class Finished:
    completion_tokens: int
    finish_reason: str  # "stop", "length" or "cancelled" (the client left)
    drafted_tokens: int = 0  # prompt lookup: draft tokens proposed
    accepted_draft_tokens: int = 0  # ... and kept (the model agreed)


@dataclass(frozen=True)
class Failed:
    status: int
    message: str


@dataclass
class GenerationJob:
    ids: list[int]
    max_tokens: int
    sampling: object  # core.runtime.sampling.Sampling
    stops: tuple[str, ...]
    emit: Callable[[object], None]  # called on the model thread
    cancel: CancelToken


def run_generation(served, job: GenerationJob) -> None:
    """Generate for ``job`` on ``served`` (a ServedModel), emitting a Token per
    generated token and one Finished. A greedy request on a server started
    with prompt lookup drafts tokens from its text (the same answer); a
    sampled one decodes plainly."""
    import torch

    from core.runtime.generation import IncrementalDecoder
    from core.runtime.prompt_lookup import LookupCounts
    from core.runtime.runners import lookup_steps_function, steps_function
    from core.serve.stop_text import StopText

    loaded = served.loaded
    input_ids = torch.tensor([job.ids], dtype=torch.long, device=loaded.device)
    decoder = IncrementalDecoder(loaded.tokenizer)
    stop = StopText(job.stops)
    counts = None
    if served.lookup is not None and job.sampling.greedy:
        counts = LookupCounts(served.lookup.draft_tokens)
        lookup_steps = lookup_steps_function(loaded.model, loaded.runner)
        stream = lookup_steps(
            loaded.model, input_ids, job.max_tokens, served.lookup, counts, served.stop_ids,
            job.cancel,
        )  # fmt: skip
    else:
        steps = steps_function(loaded.model, loaded.runner)
        stream = steps(
            loaded.model, input_ids, job.max_tokens, job.sampling, served.stop_ids, job.cancel
        )
    count, last = 0, None
    for step in stream:
        count, last = count + 1, step.token_id
        with served.tokenizer_lock:
            piece = decoder.add(step.token_id)
        job.emit(Token(stop.feed(piece)))
        if stop.stopped:
            break
    if not stop.stopped:  # bytes that never made a character: U+FFFD, not dropped
        with served.tokenizer_lock:
            held = decoder.finish()
        if held:
            job.emit(Token(stop.feed(held), 0))
    tail = stop.flush()
    if tail:
        job.emit(Token(tail, 0))
    if stop.stopped or last in served.stop_ids:
        reason = "stop"
    elif job.cancel.cancelled:
        reason = "cancelled"
    else:
        reason = "length"
    drafted, accepted = (counts.drafted, counts.accepted) if counts else (0, 0)
    job.emit(Finished(count, reason, drafted, accepted))
