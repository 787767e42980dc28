"""Training batches from the bundled training split (never the report split,
on which perplexity is reported, nor the dev split, on which defaults are
chosen and training is monitored): every training document tokenized alone,
joined by a blank line into one stream, cut into ``seq_len``-token windows,
visited in one seeded shuffled order. Each window starts with BOS where the
tokenizer adds one, as evaluation windows do. A batch is identified by its
step number alone, so resuming at step k reads exactly the batches an
uninterrupted run would have read."""

from __future__ import annotations

import torch

from core.data.texts import NEWS, training_texts
from core.data.tokens import bos_to_prepend, document_stream


class TrainingWindows:
    def __init__(
        self,
        tokenizer,
        seq_len: int,
        batch_size: int,
        seed: int,
        source: str = NEWS,
        max_tokens: int | None = None,
    ) -> None:
        """``max_tokens`` stops tokenizing once the stream is that long (the
        CPU only ever trains on a small part of the split)."""
        ids = document_stream(tokenizer, training_texts(source), max_tokens)
        count = len(ids) // seq_len
        if count < batch_size:
            raise ValueError(
                f"the training split has {len(ids)} tokens: fewer than one batch of "
                f"{batch_size} x {seq_len}"
            )
        self.windows = torch.tensor(ids[: count * seq_len], dtype=torch.long).view(count, seq_len)
        bos = bos_to_prepend(tokenizer)
        if bos is not None:
            self.windows[:, 0] = bos
        self.order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        self.batch_size = batch_size

    @property
    def batches_per_epoch(self) -> int:
        return len(self.order) // self.batch_size

    def batch(self, step: int) -> torch.Tensor:
        """The ``step``-th batch (0-based); epochs wrap around in the same order."""
        first = (step % self.batches_per_epoch) * self.batch_size
        return self.windows[self.order[first : first + self.batch_size]]

    def epoch_of(self, step: int) -> int:
        return step // self.batches_per_epoch
