"""Calibrating one transformer block at a time, as Wanda and SparseGPT do:
the statistics of block i's linears are taken on the outputs of blocks < i
as already pruned, so each block's pruning sees (and can correct for) the
errors of the ones before it.

How: one forward of the model records every block's call (the hidden
states entering block 0, and each block's other arguments: masks, rotary
tables, positions, which do not depend on the weights). Then each block is
run alone on the previous block's outputs, twice: once with hooks on its
linears to collect statistics, once after pruning to produce the next
block's inputs. That is three passes over the calibration text in all,
whatever the depth. It relies on a block's output being the next block's
input; block 0's replay is checked against the input the model itself gave
block 1, and a model that does anything between blocks is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.passes.base import PassContext
from core.passes.blocks import decoder_layers, module_path


class _Stop(Exception):
    """Raised by a hook to end a forward early (nothing after is needed)."""


@dataclass
class BlockCall:
    """One call of a block, without its hidden-states argument."""

    args: tuple
    kwargs: dict
    positional: bool  # hidden states came as the first positional argument


def _without_hidden(args: tuple, kwargs: dict) -> tuple[torch.Tensor, BlockCall]:
    if args:
        return args[0], BlockCall(args[1:], dict(kwargs), True)
    kwargs = dict(kwargs)
    return kwargs.pop("hidden_states"), BlockCall((), kwargs, False)


def replay(block: nn.Module, call: BlockCall, hidden: torch.Tensor) -> torch.Tensor:
    if call.positional:
        out = block(hidden, *call.args, **call.kwargs)
    else:
        out = block(hidden_states=hidden, **call.kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def record_block_calls(model: nn.Module, blocks: nn.ModuleList, calibration, cancel):
    """(hidden states entering block 0 per window, each block's calls per
    window, hidden states entering block 1 per window or None)."""
    first: list[torch.Tensor] = []
    second: list[torch.Tensor] = []
    calls: list[list[BlockCall]] = [[] for _ in blocks]

    def recorder(index: int):
        def hook(_module, args, kwargs):
            hidden, call = _without_hidden(args, kwargs)
            calls[index].append(call)
            if index == 0:
                first.append(hidden.detach())
            elif index == 1:
                second.append(hidden.detach())
            if index == len(blocks) - 1:
                raise _Stop  # the final norm and the head are not needed

        return hook

    handles = [
        block.register_forward_pre_hook(recorder(i), with_kwargs=True)
        for i, block in enumerate(blocks)
    ]
    device = next(model.parameters()).device
    try:
        for ids in calibration:
            cancel.raise_if_cancelled()
            try:
                model(input_ids=ids.view(1, -1).to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        for handle in handles:
            handle.remove()
    return first, calls, (second if len(blocks) > 1 else None)


def column_sq_norms(x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
    """Sum over tokens of x_j^2 per input column (Wanda's ||X_j||^2)."""
    add = x.pow(2).sum(dim=0)
    return add if state is None else state.add_(add)


def gram(x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
    """Sum over tokens of x^T x (SparseGPT's Hessian up to a constant factor,
    which neither its damping nor its Cholesky steps depend on)."""
    return x.t() @ x if state is None else state.addmm_(x.t(), x)


@torch.no_grad()
def prune_block_by_block(
    model: nn.Module,
    linears: list[tuple[str, nn.Linear]],
    calibration,
    context: PassContext,
    pass_name: str,
    accumulate: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    prune_weight: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor],
) -> None:
    """Prune ``linears`` (the model's block linears) block by block:
    ``accumulate`` folds each calibration input (tokens x in_features,
    float32) into a linear's statistic, ``prune_weight(name, weight, statistic)``
    returns its new weight."""
    blocks = decoder_layers(model)
    by_block: list[list[tuple[str, nn.Linear]]] = []
    for block in blocks:
        prefix = module_path(model, block) + "."
        by_block.append([(n, m) for n, m in linears if n.startswith(prefix)])
    outside = len(linears) - sum(len(b) for b in by_block)
    if outside:
        raise UnsupportedModelError(
            f"{pass_name}: {outside} block linear(s) lie outside the decoder layers; "
            "block-by-block calibration cannot reach them"
        )

    context.progress_fraction(0, len(blocks), f"{pass_name}: running calibration text")
    hidden, calls, block1_inputs = record_block_calls(model, blocks, calibration, context.cancel)
    for index, block in enumerate(blocks):
        stats: dict[str, torch.Tensor | None] = dict.fromkeys(n for n, _ in by_block[index])

        def hook_for(name: str, linear: nn.Linear, stats=stats):
            def hook(_module, inputs, _output):
                x = inputs[0].detach().reshape(-1, linear.in_features).float()
                stats[name] = accumulate(x, stats[name])

            return hook

        handles = [m.register_forward_hook(hook_for(n, m)) for n, m in by_block[index]]
        try:
            outputs = []
            for window, call in zip(hidden, calls[index], strict=True):
                context.cancel.raise_if_cancelled()
                outputs.append(replay(block, call, window))
        finally:
            for handle in handles:
                handle.remove()
        if index == 0 and block1_inputs is not None:
            _check_replay(pass_name, outputs, block1_inputs)
        for name, linear in by_block[index]:
            context.cancel.raise_if_cancelled()
            new = prune_weight(name, linear.weight.detach(), stats.pop(name))
            linear.weight.copy_(new.to(linear.weight.dtype))
        if index + 1 < len(blocks):  # the pruned block's outputs feed the next one
            hidden = [replay(block, c, w) for w, c in zip(hidden, calls[index], strict=True)]
        context.progress_fraction(index + 1, len(blocks), f"{pass_name}: block {index}")


def _check_replay(pass_name: str, replayed: list, expected: list) -> None:
    for got, want in zip(replayed, expected, strict=True):
        if got.shape != want.shape or not torch.allclose(
            got.float(), want.float(), rtol=1e-4, atol=1e-5
        ):
            raise UnsupportedModelError(
                f"{pass_name}: this model does more between its blocks than pass one's "
                "output to the next, so it cannot be calibrated block by block"
            )
