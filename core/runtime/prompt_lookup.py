"""Prompt lookup decoding: drafts copied from the text so far, verified in
one step of the model.

A model's answer often repeats stretches of its prompt or of itself (a
summary quoting its source, code edited in place, a list continuing its
pattern). The last few tokens are looked up earlier in the sequence and the
tokens that followed them there are proposed as a draft; one step of the
model over the draft gives its own greedy pick at every draft position, the
draft is kept up to the first disagreement, and the model's pick there is
the next token. The output is the model's own greedy output, only in fewer
steps: in PyTorch and on fp32 graphs to the rounding of a step over several
tokens against one at a time; quantized ONNX graphs compute a several-token
step with other kernels (``OTHER_KERNEL_NOTE``), and the summary says so.
transformers (``prompt_lookup_num_tokens``) and llama.cpp (``llama-lookup``)
do the same; ours runs in our runners, on the same caches, so each token is
streamed and timed and ONNX Runtime runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the CLI reads this module's limits before torch is imported
    import torch

    from core.progress import CancelToken
    from core.runtime.torch_runner import TokenStep

MAX_DRAFT_TOKENS = 64
MAX_NGRAM = 8


@dataclass(frozen=True)
class PromptLookup:
    """``draft_tokens``: the most tokens proposed per step; ``max_ngram``: the
    longest tail looked up (shorter ones are tried when it is not found, down
    to ``min_ngram``: one token recurs too often by chance to predict much)."""

    draft_tokens: int = 8
    max_ngram: int = 3
    min_ngram: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.draft_tokens <= MAX_DRAFT_TOKENS:
            raise ValueError(f"prompt lookup drafts 1 to {MAX_DRAFT_TOKENS} tokens a step")
        if not 1 <= self.min_ngram <= self.max_ngram <= MAX_NGRAM:
            raise ValueError(f"prompt lookup matches tails of 1 to {MAX_NGRAM} tokens")

    def draft(self, history: np.ndarray, room: int) -> list[int]:
        """Up to ``min(draft_tokens, room)`` tokens that followed an earlier
        occurrence of the sequence's last n tokens (n from ``max_ngram`` down
        to ``min_ngram``); none when no tail occurs earlier."""
        limit = min(self.draft_tokens, room)
        for n in range(min(self.max_ngram, len(history) - 1), self.min_ngram - 1, -1):
            if limit < 1:
                break
            # Windows that end before the last token, so each has a follower.
            windows = np.lib.stride_tricks.sliding_window_view(history[:-1], n)
            found = np.flatnonzero((windows == history[-n:]).all(axis=1))
            if found.size:
                # The latest occurrence with a whole draft after it (nearest in
                # topic); else the earliest, whose continuation is longest (a
                # match just before the tail is followed by the tail alone).
                starts = found + n
                whole = starts[starts + limit <= len(history)]
                start = int(whole[-1] if whole.size else starts[0])
                return history[start : start + limit].tolist()
        return []


# Measured on the default model (logits of a 6-token step against 6 one-token
# steps): fp32 graphs and PyTorch agree to 4e-5, but ONNX Runtime's
# MatMulNBits and dynamic int8 graphs run several tokens through another
# kernel than one, and their logits differ by up to 0.6 (as a prompt's step
# already does from the decode steps after it).
OTHER_KERNEL_NOTE = (
    "on this quantized ONNX graph a step over several tokens runs another ONNX Runtime "
    "kernel than a one-token step (logits differ by up to ~0.6), so the answer can "
    "differ from plain greedy decoding where two tokens are nearly tied"
)


@dataclass
class LookupCounts:
    """What the drafting did in one generation (the summary reports it)."""

    draft_tokens: int
    steps: int = 0  # model steps after the prompt
    drafted: int = 0  # draft tokens proposed
    accepted: int = 0  # draft tokens the model agreed with
    note: str = ""  # OTHER_KERNEL_NOTE where it applies

    def as_dict(self) -> dict:
        counts = {
            "draft_tokens": self.draft_tokens,
            "steps": self.steps,
            "drafted": self.drafted,
            "accepted": self.accepted,
        }
        return counts | ({"note": self.note} if self.note else {})


def other_kernel_for_drafts(model) -> bool:
    """Does ``model`` run a multi-token step through other kernels than one
    token (an ONNX graph with quantized matmuls)?"""
    return any(getattr(model, flag, False) for flag in ("weight_only", "int8", "static_int8"))


def lookup_loop(
    verify: Callable[[torch.Tensor, int], torch.Tensor],
    drop: Callable[[int], None],
    input_ids: torch.Tensor,
    max_new_tokens: int,
    lookup: PromptLookup,
    counts: LookupCounts,
    stop_ids: set[int] | frozenset[int],
    cancel: CancelToken | None,
) -> Iterator[TokenStep]:
    """Greedy generation with drafts. ``verify(ids [1, n], keep)`` runs ``ids``
    after the cache and returns the logits of its last ``keep`` positions;
    ``drop(k)`` removes the cache's last ``k`` positions (a rejected draft).
    A step that yields several tokens shares its time equally among them, so
    the per-token times still add up to the wall clock.

    The draft's length adapts: after a rejection the next draft is one token
    longer than what was kept, and after a draft kept whole it doubles (up to
    ``draft_tokens``). A step over many tokens costs more than one over a
    token on a CPU, so drafts the model keeps rejecting stay short."""
    import torch

    from core.runtime.torch_runner import TokenStep

    start = time.perf_counter()
    history = input_ids[0].detach().cpu().numpy().astype(np.int64)
    step_start = time.perf_counter()
    fed = input_ids  # the prompt first; then the last token and a draft
    draft: list[int] = []
    produced = 0
    limit = lookup.draft_tokens  # the next draft's most tokens (adapted as it goes)
    while produced < max_new_tokens:
        logits = verify(fed, len(draft) + 1)
        picks = logits[0].argmax(dim=-1).tolist()
        agreed = 0
        while agreed < len(draft) and draft[agreed] == picks[agreed]:
            agreed += 1
        if draft:
            counts.steps += 1
            counts.drafted += len(draft)
            counts.accepted += agreed
            drop(len(draft) - agreed)  # the cache keeps what the model agreed with
            whole = agreed == len(draft)
            limit = min(lookup.draft_tokens, 2 * limit if whole else agreed + 1)
        new = draft[:agreed] + [picks[agreed]]
        now = time.perf_counter()
        share = (now - step_start) / len(new)
        if not draft and produced:
            counts.steps += 1
        for token in new:
            yield TokenStep(produced, token, now - start, share)
            produced += 1
            if token in stop_ids or produced == max_new_tokens:
                return
        if cancel is not None and cancel.cancelled:
            return
        history = np.append(history, new)
        step_start = time.perf_counter()
        draft = lookup.draft(history, min(limit, max_new_tokens - produced - 1))
        fed = torch.tensor([[int(history[-1]), *draft]], dtype=torch.long, device=input_ids.device)
