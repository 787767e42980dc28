"""How closely a candidate (compressed) model follows its reference, token by token.

Both models read the same windows (``perplexity_windows``); at every position
of every window we compare their next-token distributions: KL(reference ||
candidate) in nats, and whether their most likely tokens agree. These see
small changes long before perplexity moves, and need no labels. Also the
paired perplexity ratio candidate / reference over the same tokens (each
window's next tokens): paired on the same text, its interval is far tighter
than two separate perplexity intervals. Intervals are mean +- 1.96 standard
errors over per-window means (positions within a window are correlated,
windows much less); the ratio's is mapped through exp.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from core.evaluate.intervals import mean_interval
from core.progress import CancelToken


@dataclass(frozen=True)
class FidelityPartial:
    windows_done: int
    windows_total: int
    tokens: int
    mean_kl: float
    top1_agreement: float
    ppl_ratio: float


@dataclass(frozen=True)
class FidelityResult:
    mean_kl: float  # nats per token, KL(reference || candidate)
    top1_agreement: float  # fraction of positions where the argmax tokens agree
    tokens: int
    windows: int
    kl_ci95_halfwidth: float | None
    top1_ci95_halfwidth: float | None
    ppl_ratio: float  # exp(mean NLL difference), candidate / reference, same tokens
    ppl_ratio_ci95_low: float | None
    ppl_ratio_ci95_high: float | None
    seconds: float


@dataclass(frozen=True)
class WindowFidelity:
    kl: float
    top1_agreement: float
    nll_delta: float  # candidate minus reference mean NLL of the window's next tokens


def _logits(model, window: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    return model(input_ids=window.to(device).unsqueeze(0)).logits[0].float()


def window_fidelity(reference_model, candidate_model, window: torch.Tensor) -> WindowFidelity:
    """KL, top-1 agreement and NLL difference over every position of one window."""
    return fidelity_to_logits(_logits(reference_model, window), candidate_model, window)


def reference_logits(model, windows: list[torch.Tensor]) -> list[torch.Tensor]:
    """The reference's logits on each window, kept to score many candidates
    against one reference (windows x tokens x vocabulary floats of memory)."""
    with torch.inference_mode():
        return [_logits(model, window) for window in windows]


def fidelity_to_logits(reference: torch.Tensor, candidate_model, window) -> WindowFidelity:
    """``window_fidelity`` against the reference's logits on ``window``."""
    with torch.inference_mode():
        candidate = _logits(candidate_model, window).to(reference.device)
    if reference.shape != candidate.shape:
        raise ValueError(
            f"the models do not share a vocabulary ({reference.shape[-1]} vs "
            f"{candidate.shape[-1]} logits)"
        )
    ref_logp = torch.log_softmax(reference, dim=-1)
    cand_logp = torch.log_softmax(candidate, dim=-1)
    kl = torch.nn.functional.kl_div(cand_logp, ref_logp, log_target=True, reduction="batchmean")
    agree = (reference.argmax(-1) == candidate.argmax(-1)).float().mean()
    targets = window[1:].to(reference.device)
    delta = torch.nn.functional.nll_loss(cand_logp[:-1], targets) - torch.nn.functional.nll_loss(
        ref_logp[:-1], targets
    )
    return WindowFidelity(kl.item(), agree.item(), delta.item())


@torch.inference_mode()
def evaluate_fidelity(
    reference_model,
    candidate_model,
    tokenizer,
    windows: list[torch.Tensor] | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[FidelityPartial | FidelityResult]:
    """Yield a FidelityPartial after each window, then the FidelityResult.

    ``windows`` defaults to the quick perplexity windows of ``tokenizer``.
    """
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    if windows is None:
        from core.evaluate.perplexity import QUICK_PROTOCOL, perplexity_windows

        windows = perplexity_windows(tokenizer, QUICK_PROTOCOL)
    kls: list[float] = []
    agreements: list[float] = []
    deltas: list[float] = []
    tokens = 0
    for window in windows:
        cancel.raise_if_cancelled()
        one = window_fidelity(reference_model, candidate_model, window)
        kls.append(one.kl)
        agreements.append(one.top1_agreement)
        deltas.append(one.nll_delta)
        tokens += window.numel()
        yield FidelityPartial(
            len(kls),
            len(windows),
            tokens,
            statistics.fmean(kls),
            statistics.fmean(agreements),
            math.exp(statistics.fmean(deltas)),
        )
    kl_interval, agree_interval = mean_interval(kls), mean_interval(agreements)
    delta_interval = mean_interval(deltas)
    yield FidelityResult(
        mean_kl=statistics.fmean(kls),
        top1_agreement=statistics.fmean(agreements),
        tokens=tokens,
        windows=len(kls),
        kl_ci95_halfwidth=kl_interval.halfwidth if kl_interval else None,
        top1_ci95_halfwidth=agree_interval.halfwidth if agree_interval else None,
        ppl_ratio=math.exp(statistics.fmean(deltas)),
        ppl_ratio_ci95_low=math.exp(delta_interval.low) if delta_interval else None,
        ppl_ratio_ci95_high=math.exp(delta_interval.high) if delta_interval else None,
        seconds=time.perf_counter() - start,
    )


def compute_fidelity(reference_model, candidate_model, tokenizer, windows=None, cancel=None):
    """``evaluate_fidelity`` without the partial results."""
    result = None
    for event in evaluate_fidelity(reference_model, candidate_model, tokenizer, windows, cancel):
        result = event
    assert isinstance(result, FidelityResult)
    return result
