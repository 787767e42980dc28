"""The generate job: prompt in, text streamed out, with timings per token.

On the compiled runner the decode step is compiled before the first token
(``compile_decode``), so no token's time includes compiling; the summary
gives the compile seconds apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.models.loading import LoadedModel, require_causal_lm
from core.progress import CancelToken
from core.runtime.prompt_lookup import OTHER_KERNEL_NOTE, LookupCounts, other_kernel_for_drafts
from core.runtime.runners import (
    COMPILED_RUNNER,
    is_onnx_runtime,
    lookup_steps_function,
    steps_function,
)
from core.runtime.sampling import GREEDY, Sampling
from core.runtime.torch_runner import stop_token_ids


@dataclass(frozen=True)
class TextToken:
    """A streamed token: ``text`` is what it adds to the output (may be empty
    while a multi-byte character is incomplete)."""

    index: int
    token_id: int
    text: str
    elapsed_s: float
    step_s: float


@dataclass(frozen=True)
class GenerationSummary:
    prompt_tokens: int
    new_tokens: int
    text: str
    prefill_ms: float  # time to first token
    decode_ms_per_token: float | None  # mean over tokens after the first
    tokens_per_s: float | None
    stop_reason: str  # "length", "stop token", "context full" or "cancelled"
    # Seconds spent compiling (or finding compiled) the decode step before
    # the first token, on the compiled runner; in none of the timings above.
    compile_s: float | None = None
    # Beam search (core/runtime/beam_generation.py): more than 1 beam. The
    # timings above are then per search step (every beam grows one token),
    # and tokens_per_s is search steps per second after the first.
    num_beams: int = 1
    search_steps: int | None = None
    # Prompt lookup (core/runtime/prompt_lookup.py): its draft length, the
    # model steps after the prompt, draft tokens proposed and accepted. The
    # timings above are per token (a step's time shared by its tokens).
    lookup: dict | None = None
    # Where the one run was timed: "<runner> on <device>, <N> threads".
    measured_on: str = ""
    # The end of ``text`` that no token streamed: bytes that never completed
    # a character (U+FFFD), added when the output ended.
    tail: str = ""


def measured_on(loaded: LoadedModel) -> str:
    """The runner, device and thread count a generation is timed on."""
    import torch

    from core.runtime.runners import runner_name

    runner = runner_name(loaded.model, loaded.runner)
    return f"{runner} on {loaded.device}, {torch.get_num_threads()} threads"


def encode_prompt(loaded: LoadedModel, prompt: str, chat: bool = False):
    from core.runtime.prompt_text import text_problem

    if problem := text_problem(prompt):
        raise ValueError(problem)
    tokenizer = loaded.tokenizer
    if chat and getattr(tokenizer, "chat_template", None):
        import torch

        from core.runtime.chat_template import chat_template_ids

        turns = [{"role": "user", "content": prompt}]
        ids = torch.tensor([chat_template_ids(tokenizer, turns)], dtype=torch.long)
    else:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise ValueError("the prompt is empty")
    _check_ids_fit(loaded, ids)
    return ids.to(loaded.device)


def _check_ids_fit(loaded: LoadedModel, ids) -> None:
    from core.models.tokenizer_fit import ids_past_embedding

    problem = ids_past_embedding(loaded, ids.flatten().tolist())
    if problem:
        raise ValueError(problem)


# Where families store their context (transformers maps most to the first;
# MPT keeps max_seq_len, ChatGLM seq_length, CTRL-era configs n_ctx).
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx")


def context_length(config) -> int:
    """Positions the model can attend to (prompt + generated)."""
    for name in CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return 2**31


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas.

    Decoding tokens one by one breaks characters that span tokens and drops
    the spaces some tokenizers attach to the following token, so each step
    decodes the whole output and emits what was added, holding back an
    incomplete character (U+FFFD at the end).
    """

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._emitted = ""

    def add(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        delta = text[len(self._emitted) :] if text.startswith(self._emitted) else text
        self._emitted = text
        return delta

    def finish(self) -> str:
        """What is still held back once the output ends: bytes that never made
        a character, as U+FFFD (they were dropped: a tiny GPT-2's 8 tokens of
        one continuation byte printed nothing)."""
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        delta = text[len(self._emitted) :] if text.startswith(self._emitted) else ""
        self._emitted = text
        return delta

    @property
    def text(self) -> str:
        return self._emitted


def stream_generation(
    loaded: LoadedModel,
    prompt: str,
    max_new_tokens: int = 64,
    sampling: Sampling = GREEDY,
    chat: bool = False,
    cancel: CancelToken | None = None,
    beam_search=None,  # core.runtime.beam_search.BeamSearch, or None
    lookup=None,  # core.runtime.prompt_lookup.PromptLookup, or None
) -> Iterator[TextToken | GenerationSummary]:
    """Yield a TextToken per generated token, then one GenerationSummary;
    with ``beam_search``, a BeamProgress per search step instead of tokens."""
    require_causal_lm(loaded, "text generation")
    cancel = cancel or CancelToken()
    input_ids = encode_prompt(loaded, prompt, chat)
    room = context_length(loaded.model.config) - input_ids.shape[1]
    if room < 1:
        raise ValueError(f"the prompt ({input_ids.shape[1]} tokens) fills the model's context")
    max_new_tokens = min(max_new_tokens, room)
    stop_ids = stop_token_ids(loaded.model, loaded.tokenizer)
    if beam_search is not None:
        from core.runtime.beam_generation import stream_beam_search

        yield from stream_beam_search(
            loaded, input_ids, room, max_new_tokens, stop_ids, beam_search, cancel
        )
        return
    compile_s = None
    if loaded.runner == COMPILED_RUNNER and not is_onnx_runtime(loaded.model):
        from core.runtime.compiled_runner import compile_decode

        compile_s = compile_decode(loaded.model, int(input_ids.shape[1]) + max_new_tokens)
    decoder = IncrementalDecoder(loaded.tokenizer)
    steps = []
    if lookup is None:
        generate_steps = steps_function(loaded.model, loaded.runner)
        stream = generate_steps(loaded.model, input_ids, max_new_tokens, sampling, stop_ids, cancel)
    else:
        counts = LookupCounts(lookup.draft_tokens)
        if other_kernel_for_drafts(loaded.model):
            counts.note = OTHER_KERNEL_NOTE
        lookup_steps = lookup_steps_function(loaded.model, loaded.runner)
        stream = lookup_steps(
            loaded.model, input_ids, max_new_tokens, lookup, counts, stop_ids, cancel
        )
    for step in stream:
        steps.append(step)
        yield TextToken(
            step.index, step.token_id, decoder.add(step.token_id), step.elapsed_s, step.step_s
        )
    if cancel.cancelled:
        reason = "cancelled"
    elif steps and steps[-1].token_id in stop_ids:
        reason = "stop token"
    elif len(steps) == room:
        reason = "context full"
    else:
        reason = "length"
    decode = steps[1:]
    decode_s = sum(s.step_s for s in decode)
    tail = decoder.finish()
    yield GenerationSummary(
        prompt_tokens=int(input_ids.shape[1]),
        new_tokens=len(steps),
        text=decoder.text,
        prefill_ms=steps[0].step_s * 1e3 if steps else 0.0,
        decode_ms_per_token=decode_s / len(decode) * 1e3 if decode else None,
        tokens_per_s=len(decode) / decode_s if decode_s > 0 else None,
        stop_reason=reason,
        compile_s=compile_s,
        lookup=None if lookup is None else counts.as_dict(),
        measured_on=measured_on(loaded),
        tail=tail,
    )
