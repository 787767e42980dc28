"""Greedy generations of a reference and a candidate model for a few fixed
prompts, side by side: the quickest way for a person to see what a
compression changed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from core.progress import CancelToken
from core.runtime.runners import steps_function
from core.runtime.torch_runner import stop_token_ids

PROMPTS = (
    "The capital of France is",
    "In a statement on Tuesday, the minister said",
    "To make a simple tomato sauce, first",
    "def fibonacci(n):",
)


@dataclass(frozen=True)
class GenerationPair:
    prompt: str
    reference: str
    candidate: str
    same_tokens: int  # leading generated tokens the two share
    identical: bool


def greedy_ids(
    model, tokenizer, prompt: str, max_new_tokens: int, cancel: CancelToken
) -> list[int]:
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
    stops = stop_token_ids(model, tokenizer)
    return [
        step.token_id
        for step in steps_function(model)(model, ids, max_new_tokens, stop_ids=stops, cancel=cancel)
    ]


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@torch.inference_mode()
def side_by_side_generations(
    reference_model,
    candidate_model,
    tokenizer,
    prompts: tuple[str, ...] = PROMPTS,
    max_new_tokens: int = 32,
    cancel: CancelToken | None = None,
) -> Iterator[GenerationPair]:
    """Yield one GenerationPair per prompt (greedy, stopping at a stop token)."""
    cancel = cancel or CancelToken()
    for prompt in prompts:
        ref = greedy_ids(reference_model, tokenizer, prompt, max_new_tokens, cancel)
        cand = greedy_ids(candidate_model, tokenizer, prompt, max_new_tokens, cancel)
        cancel.raise_if_cancelled()
        yield GenerationPair(
            prompt=prompt,
            reference=tokenizer.decode(ref, skip_special_tokens=True),
            candidate=tokenizer.decode(cand, skip_special_tokens=True),
            same_tokens=shared_prefix(ref, cand),
            identical=ref == cand,
        )
