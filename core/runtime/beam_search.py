"""Beam search over the KV cache, one step at a time, for one prompt.

The algorithm is transformers' own (``GenerationMixin._beam_search`` in
transformers 5.24), mirrored operation for operation at batch size 1 so that
it picks the same tokens as ``model.generate(num_beams=..., do_sample=False)``:
log-softmax scores summed along each beam; the best ``max(2, 1 + stop ids) *
beams`` continuations of all beams; those ending in a stop id (or at the
length limit) become finished hypotheses scored ``sum / new_length **
length_penalty``; the best unfinished ones run on, the cache reordered to
follow them; ``early_stopping`` True / False / "never" with transformers'
heuristics. It is ours rather than ``generate`` so each step is timed and
cancellable, as the greedy loop's tokens are (``torch_runner.token_loop``).

Beam search cannot stream its answer: the beam in front may still be
overtaken, and the answer is chosen only at the end. Each step yields a
``BeamStep`` with the beam that leads at that moment; the last event is the
``BeamResult``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from core.progress import CancelToken

EARLY_STOPPING = (True, False, "never")
_NEG = -1.0e9  # transformers' "never choose this" score


@dataclass(frozen=True)
class BeamSearch:
    """Settings, with transformers' meanings: ``length_penalty`` is the
    exponent of the new length a finished hypothesis' summed log-probability
    is divided by (> 0 favours longer answers); ``early_stopping`` True stops
    once ``num_beams`` hypotheses are finished, False when no running beam is
    likely to beat them, "never" when none can."""

    num_beams: int = 4
    length_penalty: float = 1.0
    early_stopping: bool | str = False

    def __post_init__(self) -> None:
        if not isinstance(self.num_beams, int) or isinstance(self.num_beams, bool):
            raise ValueError("the number of beams must be a whole number")
        if self.num_beams < 2:
            raise ValueError("beam search needs at least 2 beams (1 beam is greedy decoding)")
        if isinstance(self.length_penalty, bool) or not isinstance(
            self.length_penalty, int | float
        ):
            raise ValueError("the length penalty must be a number")
        if not math.isfinite(self.length_penalty):
            raise ValueError("the length penalty must be a finite number")
        if not any(self.early_stopping is value for value in (True, False)) and (
            self.early_stopping != "never"
        ):
            raise ValueError('early stopping must be True, False or "never"')


@dataclass(frozen=True)
class BeamStep:
    """One step of the search: every beam grew by one token. Step 0 includes
    the prompt (prefill). ``leading_ids`` are the new tokens of the running
    beam with the best score now; the answer may still be another beam."""

    index: int
    elapsed_s: float  # since the search started
    step_s: float  # this step alone: forward of all beams, selection, cache reorder
    leading_ids: tuple[int, ...]
    finished: int  # finished hypotheses kept so far (at most num_beams)


@dataclass(frozen=True)
class BeamResult:
    """The answer: the best finished hypothesis (transformers' first returned
    sequence), or when cancelled before any finished, the leading beam."""

    token_ids: tuple[int, ...]  # new tokens only
    score: float | None  # its length-penalised log-probability; None when unfinished
    steps: int
    cancelled: bool


def _gather(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """transformers' ``_gather_beams``: pick beams (dim 1) by index."""
    while indices.dim() < tensor.dim():
        indices = indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, indices, dim=1)


def beam_search_loop(
    logits_for: Callable[[int, torch.Tensor], torch.Tensor],
    reorder: Callable[[torch.Tensor], None],
    input_ids: torch.Tensor,
    max_new_tokens: int,
    settings: BeamSearch,
    stop_ids: set[int] | frozenset[int],
    cancel: CancelToken | None = None,
) -> Iterator[BeamStep | BeamResult]:
    """The search every runner shares. ``logits_for(index, ids)`` runs one
    forward of all beams (index 0: the prompt repeated per beam,
    ``[beams, prompt]``; then each beam's last token, ``[beams, 1]``) and
    returns the last position's logits ``[beams, vocab]``;
    ``reorder(beam_idx)`` makes cache row i hold what row ``beam_idx[i]``
    held. Yields a BeamStep per step, then the BeamResult."""
    beams = settings.num_beams
    device = input_ids.device
    prompt_len = int(input_ids.shape[1])
    max_length = prompt_len + max_new_tokens
    stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    keep = max(2, 1 + len(stop_ids)) * beams  # so num_beams stay unfinished
    top_beams_mask = torch.cat(
        (torch.ones(beams, dtype=torch.bool), torch.zeros(keep - beams, dtype=torch.bool))
    ).to(device)

    fill = next(iter(sorted(stop_ids)), -1)
    running = torch.full((1, beams, max_length), fill, dtype=torch.int64, device=device)
    running[:, :, :prompt_len] = input_ids[:1].expand(beams, prompt_len)[None]
    sequences = running.clone()
    # Only beam 0 starts live, so the first step does not pick one token B times.
    running_scores = torch.zeros((1, beams), dtype=torch.float, device=device)
    running_scores[:, 1:] = _NEG
    scores = torch.full((1, beams), _NEG, dtype=torch.float, device=device)
    finished = torch.zeros((1, beams), dtype=torch.bool, device=device)
    may_improve = torch.ones((1, 1), dtype=torch.bool, device=device)
    running_origin = torch.full(
        (1, beams, max_new_tokens), -1, dtype=torch.int32, device=device
    )  # which beam each token was appended to (transformers' beam_indices)
    origins = running_origin.clone()

    cur_len = prompt_len
    cancelled = False
    start = time.perf_counter()
    for index in range(max_new_tokens):
        step_start = time.perf_counter()
        if index == 0:
            ids = running[0, :, :prompt_len]
        else:
            ids = running[0, :, cur_len - 1 : cur_len]
        logits = logits_for(index, ids).to(dtype=torch.float32)
        log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.reshape(1, beams, vocab) + running_scores[:, :, None]
        log_probs = log_probs.reshape(1, -1)

        # The best `keep` continuations of all beams.
        top_scores, top_indices = torch.topk(log_probs, k=keep)
        top_from = top_indices // vocab
        top_origin = _gather(running_origin, top_from)
        top_sequences = _gather(running, top_from)
        top_ids = top_indices % vocab
        top_sequences[:, :, cur_len] = top_ids
        top_origin[:, :, cur_len - prompt_len] = top_from

        ends = torch.isin(top_ids, stop) | (cur_len + 1 >= max_length)

        # The best unfinished continuations run on.
        live_scores = top_scores + ends.to(torch.float32) * _NEG
        next_indices = torch.topk(live_scores, k=beams)[1]
        running = _gather(top_sequences, next_indices)
        running_scores = _gather(live_scores, next_indices)
        running_origin = _gather(top_origin, next_indices)

        # Finished ones among the top `beams` join the kept hypotheses if better.
        just_finished = ends & top_beams_mask[None, :]
        penalised = top_scores / ((cur_len + 1 - prompt_len) ** settings.length_penalty)
        full = torch.all(finished, dim=-1, keepdim=True) & (settings.early_stopping is True)
        penalised += full.to(torch.float32) * _NEG
        penalised += (~may_improve).to(torch.float32) * _NEG
        penalised += (~just_finished) * _NEG
        merged_indices = torch.topk(torch.cat((scores, penalised), dim=1), k=beams)[1]
        sequences = _gather(torch.cat((sequences, top_sequences), dim=1), merged_indices)
        scores = _gather(torch.cat((scores, penalised), dim=1), merged_indices)
        origins = _gather(torch.cat((origins, top_origin), dim=1), merged_indices)
        finished = _gather(torch.cat((finished, just_finished), dim=1), merged_indices)

        beam_idx = running_origin[0, :, cur_len - prompt_len]
        cur_len += 1
        may_improve = _may_improve(
            may_improve, running_scores, scores, finished, cur_len, max_length, prompt_len, settings
        )
        going_on = bool(
            torch.any(may_improve)
            & ~(torch.all(finished) & (settings.early_stopping is True))
            & ~torch.all(ends)
        )
        if going_on:
            reorder(beam_idx.to(torch.long))
        now = time.perf_counter()
        yield BeamStep(
            index,
            now - start,
            now - step_start,
            tuple(running[0, 0, prompt_len:cur_len].tolist()),
            int(finished.sum()),
        )
        if not going_on:
            break
        if cancel is not None and cancel.cancelled:  # checked after the yield, as token_loop
            cancelled = True
            break
    yield _result(sequences, scores, origins, finished, running, prompt_len, cur_len, cancelled)


def _may_improve(
    may_improve, running_scores, scores, finished, cur_len, max_length, prompt_len, settings
) -> torch.Tensor:
    """transformers' ``_check_early_stop_heuristic``: can a running beam still
    beat the worst kept hypothesis?"""
    if settings.early_stopping == "never" and settings.length_penalty > 0.0:
        best_length = max_length - prompt_len
    else:
        best_length = cur_len - prompt_len
    best_running = running_scores[:, :1] / (best_length**settings.length_penalty)
    worst_kept = torch.where(finished, torch.min(scores, dim=1, keepdim=True)[0], _NEG)
    return may_improve & torch.any(best_running > worst_kept, dim=-1, keepdim=True)


def _result(sequences, scores, origins, finished, running, prompt_len, cur_len, cancelled):
    steps = cur_len - prompt_len
    if bool(finished[0, 0]):
        length = int((origins[0, 0] + 1).bool().sum())
        ids = sequences[0, 0, prompt_len : prompt_len + length]
        return BeamResult(tuple(ids.tolist()), float(scores[0, 0]), steps, cancelled)
    ids = running[0, 0, prompt_len:cur_len]
    return BeamResult(tuple(ids.tolist()), None, steps, cancelled)
