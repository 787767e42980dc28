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
from core.runtime.generation import context_length
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


def _key(model, batch: int):
    # Batch 1 keeps the plain id; beam search (one cache row per beam) needs
    # its own static cache and graph per beam count.
    return id(model) if batch == 1 else (id(model), batch)


def _decode_for(model, needed_len: int, batch: int = 1) -> _CompiledDecode:
    found = _compiled.get(_key(model, batch))
    if found is not None and found.max_len >= needed_len:
        return found
    if found is None and len(_compiled) >= _keep:
        release_compiled()
    length = min(-(-needed_len // CACHE_BUCKET) * CACHE_BUCKET, context_length(model.config))
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
    _compiled[_key(model, batch)] = compiled
    return compiled


def compile_decode(model, needed_len: int, batch: int = 1) -> float:
    """Compile (or find) the decode step for runs up to ``needed_len`` tokens
    of ``batch`` rows (beam search: one per beam) and run it once; returns
    the seconds it took. Raises UnsupportedModelError when torch.compile
    cannot trace the model."""
    start = time.perf_counter()
    decode = _decode_for(model, needed_len, batch)
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():  # inputs made inside it, as in a run (dynamo guards on it)
            ids = torch.zeros((batch, 1), dtype=torch.long, device=device)
            # An eager step first, as in a run: the cache initialises its
            # tensors on first use, and a graph traced before that would be
            # traced again at the first real run.
            decode.cache.reset()
            _forward(model, decode.cache, ids, torch.zeros_like(ids))
            decode.step(ids, torch.ones_like(ids))
    except Exception as error:  # dynamo/inductor raise many types; all mean "cannot compile"
        _compiled.pop(_key(model, batch), None)
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


def _reorder_in_place(cache: StaticCache, beam_idx: torch.Tensor) -> None:
    """Row i of every layer takes what row ``beam_idx[i]`` held, written into
    the same tensors: the cache's own ``reorder_cache`` swaps in new ones,
    and the compiled graph reads the static addresses it was traced with."""
    for layer in cache.layers:
        layer.keys.copy_(layer.keys.index_select(0, beam_idx))
        layer.values.copy_(layer.values.index_select(0, beam_idx))


@torch.inference_mode()
def beam_steps(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    settings,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    cancel: CancelToken | None = None,
):
    """Beam search (``core.runtime.beam_search``): the prompt eager, once per
    beam, then the compiled step on a static cache of one row per beam."""
    from core.runtime.beam_search import beam_search_loop

    beams = settings.num_beams
    device = input_ids.device
    prompt_len = input_ids.shape[1]
    decode = _decode_for(model, prompt_len + max_new_tokens, beams)
    if prompt_len + max_new_tokens > decode.max_len:
        raise ValueError(f"{prompt_len} + {max_new_tokens} tokens exceed the model's context")
    decode.cache.reset()
    prompt_positions = torch.arange(prompt_len, device=device).unsqueeze(0).expand(beams, -1)

    def logits_for(index, ids):
        if index == 0:
            return _forward(model, decode.cache, ids, prompt_positions)[:, -1, :]
        position = torch.full((beams, 1), prompt_len + index - 1, dtype=torch.long, device=device)
        # contiguous: a view's strides would be guarded on and recompile.
        return decode.step(ids.contiguous(), position)[:, -1, :]

    def reorder(beam_idx):
        _reorder_in_place(decode.cache, beam_idx)

    yield from beam_search_loop(
        logits_for, reorder, input_ids, max_new_tokens, settings, stop_ids, cancel
    )
