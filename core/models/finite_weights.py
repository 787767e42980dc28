"""Weights that are not numbers (NaN, infinities): a damaged or diverged
checkpoint. Every number measured on such a model is NaN, and a compressed
copy inherits it, so the load says so and a broken run names the model
itself as the cause, not the recipe's most lossy pass."""

from __future__ import annotations

import torch

# A broken run's likely cause when the loaded model's own weights are not numbers.
ORIGINAL_NOT_NUMBERS = "the loaded model itself: some of its weights are NaN or infinite"


@torch.no_grad()
def non_finite_weights(model: torch.nn.Module) -> int:
    """How many float parameters and buffers of ``model`` are NaN or infinite."""
    count = 0
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point() and tensor.device.type != "meta":
            count += int(tensor.numel() - torch.isfinite(tensor).sum())
    return count


def non_finite_note(count: int) -> str:
    return (
        f"{count:,} weights are NaN or infinite: every number measured on this model will be "
        "flagged broken (a damaged or diverged checkpoint?)"
    )
