"""PyTorch decode through ``torch.compile`` (inductor, weights frozen) with a
static KV cache: the same TokenStep loop as ``torch_runner``.

Why: at batch 1 on a CPU, eager decode of a small model is dominated by the
overhead of a few hundred small ops per token, not by arithmetic. Compiled
(measured on the default model, 2 threads): fp32 43 against 57 ms/token,
W8A8 20 against 38; inductor fuses W8A8's per-token activation quantisation
into a few kernels. Freezing (weights as constants) lets inductor pre-pack
the weights; without it fp32 decode was 52 ms/token.

Prefill runs eager: it is one call per run and its length varies, so a
compiled prefill would recompile per prompt length. Decode steps all have one
shape because the cache is static, so one graph serves every step and every
later run whose prompt plus new tokens fits the cache; the cache length is
rounded up to a bucket so a slightly longer run does not recompile.
Compiling takes tens of seconds the first time (inductor's on-disk cache
makes repeats faster); ``compile_decode`` does it up front so a measurement
never times it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch._dynamo import config as dynamo_config
from torch._inductor import config as inductor_config
from transformers import StaticCache

from core.errors import UnsupportedModelError
from core.progress import CancelToken
from core.runtime.sampling import GREEDY, Sampling, make_generator
from core.runtime.torch_runner import TokenStep, token_loop

CACHE_BUCKET = 256  # static cache lengths are multiples of this


@dataclass
class _CompiledDecode:
    model: object  # held so that its id stays its own while compiled
    cache: StaticCache
    max_len: int
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# Compiled decodes by model id, oldest first. A compiled graph holds its
# model's (frozen) weights, and dynamo refuses a ninth graph for one function
# (its recompile limit), so at most ``_keep`` stay; compiling one more drops
# them all (dynamo's caches cannot drop one graph). A table that times many
# configurations side by side raises the number with ``keep_compiled``.
_compiled: dict[int, _CompiledDecode] = {}
_keep = 2


def keep_compiled(count: int) -> None:
    """Keep up to ``count`` compiled models alive at once (default 2)."""
    global _keep
    _keep = max(1, count)


def release_compiled() -> None:
    """Drop every compiled decode and dynamo's caches (frees their weights)."""
    _compiled.clear()
    torch._dynamo.reset()


def _forward(model, cache: StaticCache, input_ids: torch.Tensor, positions: torch.Tensor):
    out = model(
        input_ids=input_ids, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
    )
    return out.logits


def _decode_for(model, needed_len: int) -> _CompiledDecode:
    found = _compiled.get(id(model))
    if found is not None and found.max_len >= needed_len:
        return found
    if found is None and len(_compiled) >= _keep:
        release_compiled()
    limit = getattr(model.config, "max_position_embeddings", None)
    length = -(-needed_len // CACHE_BUCKET) * CACHE_BUCKET
    if limit:
        length = min(length, limit)
    cache = StaticCache(config=model.config, max_cache_len=length)

    def forward(input_ids, positions):
        return _forward(model, cache, input_ids, positions)

    compiled_forward = torch.compile(forward, fullgraph=True, dynamic=False)

    def step(input_ids, positions):
        # Set around each call, not via compile(options=...): measured, the
        # options route did not freeze (52 against 42 ms/token); a global
        # setting would leak into every other compile in the process.
        with (
            inductor_config.patch(freezing=True),
            dynamo_config.patch(recompile_limit=max(8, _keep)),
        ):
            return compiled_forward(input_ids, positions)

    compiled = _CompiledDecode(model, cache, length, step)
    _compiled[id(model)] = compiled
    return compiled


def compile_decode(model, needed_len: int) -> float:
    """Compile (or find) the decode step for runs up to ``needed_len`` tokens
    and run it once; returns the seconds it took. Raises
    UnsupportedModelError when torch.compile cannot trace the model."""
    start = time.perf_counter()
    decode = _decode_for(model, needed_len)
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():  # inputs made inside it, as in a run (dynamo guards on it)
            ids = torch.zeros((1, 1), dtype=torch.long, device=device)
            # An eager step first, as in a run: the cache initialises its
            # tensors on first use, and a graph traced before that would be
            # traced again at the first real run.
            decode.cache.reset()
            _forward(model, decode.cache, ids, torch.zeros_like(ids))
            decode.step(ids, torch.ones_like(ids))
    except Exception as error:  # dynamo/inductor raise many types; all mean "cannot compile"
        _compiled.pop(id(model), None)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UnsupportedModelError(
            f"torch.compile could not compile this model's decode step "
            f"({type(error).__name__}: {first_line[:200]}); run it on PyTorch eager instead."
        ) from error
    return time.perf_counter() - start


@torch.inference_mode()
def generate_steps(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling = GREEDY,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    cancel: CancelToken | None = None,
) -> Iterator[TokenStep]:
    """Yield tokens one at a time; stops at ``max_new_tokens``, a stop id, or cancel.
    The first call for a model (or a longer run) compiles before the first token."""
    device = input_ids.device
    prompt_len = input_ids.shape[1]
    decode = _decode_for(model, prompt_len + max_new_tokens)
    if prompt_len + max_new_tokens > decode.max_len:
        raise ValueError(f"{prompt_len} + {max_new_tokens} tokens exceed the model's context")
    decode.cache.reset()
    prompt_positions = torch.arange(prompt_len, device=device).unsqueeze(0)

    def logits_for(index, previous):
        if previous is None:  # the prompt, eager
            return _forward(model, decode.cache, input_ids, prompt_positions)
        position = torch.full((1, 1), prompt_len + index - 1, dtype=torch.long, device=device)
        return decode.step(previous, position)

    generator = make_generator(sampling, device)
    yield from token_loop(logits_for, max_new_tokens, sampling, generator, stop_ids, cancel)
