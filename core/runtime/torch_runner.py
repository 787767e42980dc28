"""PyTorch inference with a KV cache, one event per generated token.

The loop is ours rather than ``model.generate`` so that each token can be
timed and streamed as it is produced and cancelled between tokens; it calls
the model exactly as ``generate`` does (a DynamicCache, logits of the last
position only), and benchmarks/decode_speed.py checks it is not slower.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from core.progress import CancelToken
from core.runtime.sampling import GREEDY, Sampling, make_generator, pick_next


@dataclass(frozen=True)
class TokenStep:
    """One generated token. Step 0 includes the prefill (time to first token)."""

    index: int
    token_id: int
    elapsed_s: float  # since generation started
    step_s: float  # time of this step alone


def stop_token_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return ids


def token_loop(
    logits_for: Callable[[int, torch.Tensor | None], torch.Tensor],
    max_new_tokens: int,
    sampling: Sampling,
    generator: torch.Generator | None,
    stop_ids: set[int] | frozenset[int],
    cancel: CancelToken | None,
) -> Iterator[TokenStep]:
    """The loop every runner shares: ``logits_for(index, previous next ids)``
    runs one step (index 0: the prompt, previous None) and returns logits;
    each token is picked, timed and yielded; stops at ``max_new_tokens``, a
    stop id, or cancel. Reading each token as a Python int synchronises the
    device, so step times include all queued GPU work."""
    next_ids = None
    start = time.perf_counter()
    for index in range(max_new_tokens):
        step_start = time.perf_counter()
        logits = logits_for(index, next_ids)
        next_ids = pick_next(logits[:, -1, :], sampling, generator)
        token = int(next_ids[0, 0])
        now = time.perf_counter()
        yield TokenStep(index, token, now - start, now - step_start)
        if token in stop_ids or (cancel is not None and cancel.cancelled):
            return


@torch.inference_mode()
def generate_steps(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling = GREEDY,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    cancel: CancelToken | None = None,
) -> Iterator[TokenStep]:
    """Yield tokens one at a time; stops at ``max_new_tokens``, a stop id, or cancel."""
    cache = DynamicCache(config=model.config)

    def logits_for(index, previous):
        ids = input_ids if previous is None else previous
        return model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits

    generator = make_generator(sampling, input_ids.device)
    yield from token_loop(logits_for, max_new_tokens, sampling, generator, stop_ids, cancel)


@torch.inference_mode()
def beam_steps(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    settings,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    cancel: CancelToken | None = None,
):
    """Beam search (``core.runtime.beam_search``) on a DynamicCache holding a
    row per beam, reordered by the cache's own ``reorder_cache`` each step.
    The prompt runs once per beam, as ``generate`` does, so the scores match."""
    from core.runtime.beam_search import beam_search_loop

    cache = DynamicCache(config=model.config)

    def logits_for(index, ids):
        out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]

    yield from beam_search_loop(
        logits_for, cache.reorder_cache, input_ids, max_new_tokens, settings, stop_ids, cancel
    )


@torch.inference_mode()
def lookup_steps(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    lookup,
    counts,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    cancel: CancelToken | None = None,
) -> Iterator[TokenStep]:
    """Greedy generation with prompt-lookup drafts (``core.runtime.prompt_lookup``)
    on a DynamicCache cropped back past a rejected draft, as transformers'
    assisted generation does (sliding-window layers record what they drop)."""
    from core.runtime.prompt_lookup import lookup_loop

    cache = DynamicCache(config=model.config)
    cache.activate_past_recording()

    def verify(ids, keep):
        logits = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=keep).logits
        if not cache.is_croppable:  # a recurrent state (Mamba and kin) cannot be rolled back
            raise ValueError(
                "prompt lookup needs a cache it can roll back; this model keeps a recurrent "
                "state: generate without --prompt-lookup"
            )
        return logits

    def drop(positions):
        if positions:
            cache.crop(-positions)

    loop = lookup_loop(verify, drop, input_ids, max_new_tokens, lookup, counts, stop_ids, cancel)
    yield from loop
