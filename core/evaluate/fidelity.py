"""How closely a candidate (compressed) model follows its reference, token by token.

Both models read the same windows (``perplexity_windows``); at every position
of every window we compare their next-token distributions: KL(reference ||
candidate) in nats, and whether their most likely tokens agree. These see
small changes long before perplexity moves, and need no labels. Intervals
are mean +- 1.96 standard errors over per-window means (positions within a
window are correlated, windows much less).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from core.evaluate.statistics import mean_interval
from core.jobs import CancelToken


@dataclass(frozen=True)
class FidelityPartial:
    windows_done: int
    windows_total: int
    tokens: int
    mean_kl: float
    top1_agreement: float


@dataclass(frozen=True)
class FidelityResult:
    mean_kl: float  # nats per token, KL(reference || candidate)
    top1_agreement: float  # fraction of positions where the argmax tokens agree
    tokens: int
    windows: int
    kl_ci95_halfwidth: float | None
    top1_ci95_halfwidth: float | None
    seconds: float


def _logits(model, window: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    return model(input_ids=window.to(device).unsqueeze(0)).logits[0].float()


def window_fidelity(reference_model, candidate_model, window: torch.Tensor) -> tuple[float, float]:
    """(mean KL, top-1 agreement) over every position of one window."""
    reference = _logits(reference_model, window)
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
    return kl.item(), agree.item()


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
    tokens = 0
    for window in windows:
        cancel.raise_if_cancelled()
        kl, agree = window_fidelity(reference_model, candidate_model, window)
        kls.append(kl)
        agreements.append(agree)
        tokens += window.numel()
        yield FidelityPartial(
            len(kls), len(windows), tokens, statistics.fmean(kls), statistics.fmean(agreements)
        )
    kl_interval, agree_interval = mean_interval(kls), mean_interval(agreements)
    yield FidelityResult(
        mean_kl=statistics.fmean(kls),
        top1_agreement=statistics.fmean(agreements),
        tokens=tokens,
        windows=len(kls),
        kl_ci95_halfwidth=kl_interval.halfwidth if kl_interval else None,
        top1_ci95_halfwidth=agree_interval.halfwidth if agree_interval else None,
        seconds=time.perf_counter() - start,
    )


def compute_fidelity(reference_model, candidate_model, tokenizer, windows=None, cancel=None):
    """``evaluate_fidelity`` without the partial results."""
    result = None
    for event in evaluate_fidelity(reference_model, candidate_model, tokenizer, windows, cancel):
        result = event
    assert isinstance(result, FidelityResult)
    return result
