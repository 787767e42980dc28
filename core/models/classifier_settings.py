"""The demo classifier's training settings: what its cache is keyed by (so
loading needs them) and what core.evaluate.sentiment_classifier trains with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifierSettings:
    train_examples: int | None = 4000  # None: the whole train split (10,030)
    test_examples: int | None = None  # None: the whole test split (998)
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-4  # 5e-5 barely moved the loss in 60 steps
    warmup_fraction: float = 0.1
    max_length: int = 64  # tokens; review snippets are at most 255 characters
    seed: int = 0

    def describe(self) -> str:
        train = self.train_examples or "all"
        test = self.test_examples or "all"
        return (
            f"MiniLM-L6 + linear head, {train} train reviews x {self.epochs} epoch(s), "
            f"batch {self.batch_size}, AdamW lr {self.learning_rate:g} linear decay, "
            f"max {self.max_length} tokens, seed {self.seed}; {test} test reviews (split by "
            "film); Wilson 95% CI"
        )


# The small variant for CI (~15 s on 2 CPU cores): too little data to learn
# the task, enough to see the loss fall on what it trains on.
FAST = ClassifierSettings(
    train_examples=64,
    test_examples=64,
    epochs=4,
    batch_size=16,
    learning_rate=2e-4,
    max_length=48,
)
