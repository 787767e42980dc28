"""ONNX Runtime inference with a KV cache, one event per generated token.

The same loop and events as ``core.runtime.torch_runner.generate_steps``
(TokenStep per token, greedy or the same sampling code, cancellable between
tokens), on an ``OrtCausalLM``: the prompt runs as one step from an empty
cache, then one token per step, the cache staying where the session keeps it
(onnxruntime values, on the GPU under the CUDA provider; on a fused graph,
buffers sized for the whole sequence and updated in place).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from core.progress import CancelToken
from core.runtime.onnx.ort_model import OrtCausalLM
from core.runtime.sampling import GREEDY, Sampling, make_generator
from core.runtime.torch_runner import TokenStep, token_loop


def generate_steps(
    model: OrtCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling = GREEDY,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    cancel: CancelToken | None = None,
) -> Iterator[TokenStep]:
    """Yield tokens one at a time; stops at ``max_new_tokens``, a stop id, or cancel."""
    ids = input_ids.detach().cpu().numpy().astype(np.int64)
    # The longest this sequence can get: a fused graph's cache is then written
    # in place instead of copied into a new one each step.
    past = model.empty_cache(capacity=ids.shape[1] + max_new_tokens)

    def logits_for(index, previous):
        nonlocal past
        step_ids = ids if previous is None else previous.numpy()
        last = np.array([step_ids.shape[1] - 1], dtype=np.int64)  # logits of the last position
        out = model.step(step_ids, past, last)
        past = out.present  # the session keeps its values (on the GPU under CUDA)
        return out.logits

    generator = make_generator(sampling, torch.device("cpu"))
    yield from token_loop(logits_for, max_new_tokens, sampling, generator, stop_ids, cancel)


def lookup_steps(
    model: OrtCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    lookup,
    counts,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    cancel: CancelToken | None = None,
) -> Iterator[TokenStep]:
    """Greedy generation with prompt-lookup drafts (``core.runtime.prompt_lookup``):
    a draft runs as one step of the graph, and the cache is cut back past a
    rejected draft (``OrtCausalLM.without_last``)."""
    from core.runtime.prompt_lookup import lookup_loop

    # Drafts never pass max_new_tokens, so the sequence fits this capacity.
    past = model.empty_cache(capacity=input_ids.shape[1] + max_new_tokens)

    def verify(ids, keep):
        nonlocal past
        step_ids = ids.detach().cpu().numpy().astype(np.int64)
        n = step_ids.shape[1]
        out = model.step(step_ids, past, np.arange(n - keep, n, dtype=np.int64))
        past = out.present
        return out.logits

    def drop(positions):
        nonlocal past
        past = model.without_last(past, positions)

    loop = lookup_loop(verify, drop, input_ids, max_new_tokens, lookup, counts, stop_ids, cancel)
    yield from loop
