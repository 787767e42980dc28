"""Accuracy of a sentiment classifier on the film-review test split, and its
agreement with a reference classifier (the uncompressed original).

Protocol: the reviews of the test split (split by film, never seen in
training or calibration), encoded as the demo classifier was trained
(truncated to 64 tokens, padded per batch of 32), label = argmax of the
logits mapped through the model's ``id2label``. Quick: the first 200 test
reviews (a fixed prefix of a fixed shuffle); full: all 998. Accuracy comes
with the number of examples, a Wilson 95% interval, the majority-class rate
and the near-chance flag (``zero_shot.summarise``); agreement is the share
of reviews on which candidate and reference give the same label, the
fidelity measure that resolves small changes the wide accuracy interval
cannot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from core.data.sentiment import LABELS
from core.errors import UnsupportedModelError
from core.evaluate.zero_shot import (
    QUICK,
    AccuracyPartial,
    AccuracySummary,
    ReviewSplitProtocol,
    summarise,
)
from core.progress import CancelToken


@dataclass(frozen=True)
class ClassifierProtocol(ReviewSplitProtocol):
    max_length: int = 64  # tokens, as the demo classifier was trained
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    def describe(self) -> str:
        size = f"first {self.quick_examples}" if self.mode == QUICK else "all"
        return (
            f"{self.mode}: classifier argmax, {size} film reviews of the {self.split} split "
            f"(split by film), max {self.max_length} tokens; Wilson 95% CI"
        )


QUICK_CLASSIFIER = ClassifierProtocol()


@dataclass(frozen=True)
class ClassifierAccuracy(AccuracySummary):
    agreement: float | None  # same label as the reference; None without one
    protocol: str
    seconds: float


def label_names(model) -> list[str]:
    """The model's class names by index, checked to be the sentiment labels."""
    id2label = getattr(model.config, "id2label", None) or {}
    names = [str(id2label[i]).lower() for i in sorted(id2label)]
    if sorted(names) != sorted(LABELS):
        raise UnsupportedModelError(
            f"sentiment accuracy needs a classifier whose labels are {'/'.join(LABELS)} "
            f"(this one has {'/'.join(names) or 'none'})."
        )
    return names


def _predict(model, names, inputs) -> list[str]:
    return [names[i] for i in model(**inputs).logits.argmax(-1).tolist()]


@torch.inference_mode()
def evaluate_classifier(
    model,
    tokenizer,
    protocol: ClassifierProtocol = QUICK_CLASSIFIER,
    cancel: CancelToken | None = None,
    reference=None,
) -> Iterator[AccuracyPartial | ClassifierAccuracy]:
    """Yield an AccuracyPartial after each batch, then the ClassifierAccuracy.
    With ``reference`` (a model of the same tokenizer), also its agreement."""
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    names = label_names(model)
    reference_names = label_names(reference) if reference is not None else None
    examples = protocol.examples()
    if tokenizer.pad_token is None and protocol.batch_size > 1:
        from core.errors import UnsupportedModelError

        raise UnsupportedModelError(  # transformers' own message asks for Python code
            "this classifier's tokenizer has no padding token, so reviews of different "
            "lengths cannot be scored in batches: name one as pad_token in its "
            "tokenizer_config.json (and pad_token_id in config.json)"
        )
    device = next(model.parameters()).device
    predictions: list[str] = []
    same = 0
    for i in range(0, len(examples), protocol.batch_size):
        cancel.raise_if_cancelled()
        batch = examples[i : i + protocol.batch_size]
        inputs = tokenizer(
            [text for text, _ in batch],
            padding=True,
            truncation=True,
            max_length=protocol.max_length,
            return_tensors="pt",
        ).to(device)
        answers = _predict(model, names, inputs)
        if reference is not None:
            theirs = _predict(reference, reference_names, inputs)
            same += sum(a == b for a, b in zip(answers, theirs, strict=True))
        predictions += answers
        truths = [label for _, label in examples[: len(predictions)]]
        correct = sum(p == t for p, t in zip(predictions, truths, strict=True))
        yield AccuracyPartial(len(predictions), len(examples), correct, correct / len(predictions))
    yield ClassifierAccuracy(
        **summarise(predictions, [label for _, label in examples], list(LABELS)),
        agreement=same / len(examples) if reference is not None else None,
        protocol=protocol.describe(),
        seconds=time.perf_counter() - start,
    )
