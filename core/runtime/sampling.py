"""How the next token is chosen from the logits: greedy or sampled."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """Greedy when ``temperature`` is 0; otherwise temperature, top-k, top-p."""

    temperature: float = 0.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0  # 1.0: no nucleus cut
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.temperature < float("inf")):  # NaN too
            raise ValueError("temperature must be a number >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = Sampling()


def make_generator(sampling: Sampling, device: torch.device) -> torch.Generator | None:
    if sampling.greedy:
        return None
    generator = torch.Generator(device=device)
    if sampling.seed is not None:
        generator.manual_seed(sampling.seed)
    else:
        generator.seed()
    return generator


def pick_next(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None
) -> torch.Tensor:
    """Next token ids, shape (batch, 1), from last-position logits (batch, vocab)."""
    if sampling.greedy:
        return logits.argmax(dim=-1, keepdim=True)
    # Shifted so the best is 0 before dividing, and the temperature kept above
    # float32's smallest normal (1e-300 was 0 in float32: 0/0 = NaN): a tiny
    # temperature sends the rest to -inf, greedy in the limit. Softmax, top-k
    # and top-p ignore the shift.
    scores = logits.float()
    temperature = max(sampling.temperature, torch.finfo(torch.float32).tiny)
    scores = (scores - scores.max(dim=-1, keepdim=True).values) / temperature
    if sampling.top_k:
        kth = torch.topk(scores, min(sampling.top_k, scores.shape[-1])).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the mass before it already reaches top_p; the
        # first token always stays.
        drop_sorted = cumulative - sorted_scores.softmax(dim=-1) >= sampling.top_p
        # explicitly: a top_p below float32's smallest number compares as 0,
        # which the first token's 0 mass before it "reaches"
        drop_sorted[..., 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)
