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
