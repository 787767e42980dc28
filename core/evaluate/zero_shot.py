"""Zero-shot sentiment accuracy of a causal language model on film reviews.

Each test review is put in a fixed prompt; the model's log-likelihood of each
label word as the continuation (summed over the word's tokens) decides its
answer, and no example of the task is shown. Accuracy comes with the number
of examples, a Wilson 95% interval, the majority-class rate (what always
answering the commoner label scores) and a ``near_chance`` flag set when the
interval reaches down to that rate: small models often sit there, and a
compressed model "keeping" near-chance accuracy says nothing.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from core.data.sentiment import SPLITS, sentiment_split
from core.evaluate.intervals import wilson_interval
from core.progress import CancelToken

QUICK = "quick"
FULL = "full"


@dataclass(frozen=True)
class ReviewSplitProtocol:
    """Which film reviews an accuracy protocol scores: a split, all of it or
    its first ``quick_examples``."""

    split: str = "test"
    quick_examples: int = 200
    mode: str = QUICK  # "full": every review of the split

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}")
        if self.mode not in (QUICK, FULL) or self.quick_examples < 1:
            raise ValueError("mode must be 'quick' or 'full', with quick_examples >= 1")

    def examples(self):
        data = sentiment_split(self.split)
        return data[: self.quick_examples] if self.mode == QUICK else data


@dataclass(frozen=True)
class ZeroShotProtocol(ReviewSplitProtocol):
    # Chosen on the validation split (first 150) over two alternatives; the
    # question form made SmolLM2-135M answer "negative" 99% of the time.
    template: str = "Review: {text}\nSentiment:"
    label_words: tuple[tuple[str, str], ...] = (
        ("negative", " negative"),
        ("positive", " positive"),
    )

    def describe(self) -> str:
        size = f"first {self.quick_examples}" if self.mode == QUICK else "all"
        words = "/".join(repr(w) for _, w in self.label_words)
        return (
            f"{self.mode}: zero-shot, {size} film reviews of the {self.split} split (split by "
            f"film), label by log-likelihood of {words}; Wilson 95% CI"
        )


QUICK_ZERO_SHOT = ZeroShotProtocol()


@dataclass(frozen=True)
class AccuracyPartial:
    done: int
    total: int
    correct: int
    accuracy: float


@dataclass(frozen=True)
class AccuracySummary:
    """What ``summarise`` measures; every accuracy result starts with these."""

    accuracy: float
    ci95_low: float
    ci95_high: float
    examples: int
    correct: int
    majority_rate: float  # accuracy of always answering the commoner label
    near_chance: bool  # the interval's low end does not clear majority_rate (or is below it)
    predicted_share: dict[str, float]  # how often each label was answered


@dataclass(frozen=True)
class AccuracyResult(AccuracySummary):
    protocol: str
    seconds: float


def summarise(predictions: list[str], truths: list[str], labels: list[str]) -> dict:
    """AccuracySummary's fields: Wilson interval, majority rate, near-chance flag."""
    n = len(truths)
    correct = sum(p == t for p, t in zip(predictions, truths, strict=True))
    interval = wilson_interval(correct, n)
    majority = max(Counter(truths).values()) / n
    answered = Counter(predictions)
    return {
        "accuracy": correct / n,
        "ci95_low": interval.low,
        "ci95_high": interval.high,
        "examples": n,
        "correct": correct,
        "majority_rate": majority,
        "near_chance": interval.low <= majority,
        "predicted_share": {label: answered[label] / n for label in labels},
    }


def continuation_logprobs(model, tokenizer, prompt: str, continuations: list[str]) -> list[float]:
    """log P(continuation | prompt) for each continuation, summed over its tokens.

    The prompt runs once; a continuation longer than one token continues
    from a copy of the prompt's KV cache.
    """
    device = next(model.parameters()).device
    prompt_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
    out = model(input_ids=prompt_ids, use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    scores = []
    for text in continuations:
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(device)
        score = first[ids[0, 0]]
        if ids.shape[1] > 1:
            cache = copy.deepcopy(out.cache)
            rest = model(input_ids=ids[:, :-1], cache=cache, use_cache=True).logits
            logp = torch.log_softmax(rest[0].float(), dim=-1)
            score = score + logp.gather(1, ids[0, 1:, None]).sum()
        scores.append(score.item())
    return scores


@torch.inference_mode()
def evaluate_zero_shot(
    model,
    tokenizer,
    protocol: ZeroShotProtocol = QUICK_ZERO_SHOT,
    cancel: CancelToken | None = None,
) -> Iterator[AccuracyPartial | AccuracyResult]:
    """Yield an AccuracyPartial after each review, then the AccuracyResult."""
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    examples = protocol.examples()
    labels = [label for label, _ in protocol.label_words]
    words = [word for _, word in protocol.label_words]
    predictions: list[str] = []
    correct = 0
    for text, truth in examples:
        cancel.raise_if_cancelled()
        scores = continuation_logprobs(model, tokenizer, protocol.template.format(text=text), words)
        predictions.append(labels[max(range(len(scores)), key=scores.__getitem__)])
        correct += predictions[-1] == truth
        yield AccuracyPartial(len(predictions), len(examples), correct, correct / len(predictions))
    yield AccuracyResult(
        **summarise(predictions, [truth for _, truth in examples], labels),
        protocol=protocol.describe(),
        seconds=time.perf_counter() - start,
    )
