"""ONNX Runtime inference with a KV cache, one event per generated token.

The same loop and events as ``core.runtime.torch_runner.generate_steps``
(TokenStep per token, greedy or the same sampling code, cancellable between
tokens), on an ``OrtCausalLM``: the prompt runs as one step from an empty
cache, then one token per step, the cache staying where the session keeps it
(onnxruntime values, on the GPU under the CUDA provider).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch

from core.jobs import CancelToken
from core.runtime.ort_model import OrtCausalLM
from core.runtime.sampling import GREEDY, Sampling, make_generator, pick_next
from core.runtime.torch_runner import TokenStep


def generate_steps(
    model: OrtCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling = GREEDY,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    cancel: CancelToken | None = None,
) -> Iterator[TokenStep]:
    """Yield tokens one at a time; stops at ``max_new_tokens``, a stop id, or cancel."""
    generator = make_generator(sampling, torch.device("cpu"))
    ids = input_ids.detach().cpu().numpy().astype(np.int64)
    past = model.empty_cache()
    start = time.perf_counter()
    for index in range(max_new_tokens):
        step_start = time.perf_counter()
        last = np.array([ids.shape[1] - 1], dtype=np.int64)  # logits of the last position only
        out = model.step(ids, past, last)
        next_ids = pick_next(out.logits[:, -1, :], sampling, generator)
        token = int(next_ids[0, 0])
        now = time.perf_counter()
        yield TokenStep(index, token, now - start, now - step_start)
        if token in stop_ids or (cancel is not None and cancel.cancelled):
            return
        past = out.present
        ids = next_ids.numpy()
