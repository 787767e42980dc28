"""Perplexity computed the way Hugging Face does it (``labels=`` loss with
-100 on unscored tokens), kept apart from our protocol's own code so the
tests and benchmarks/eval_speed.py can check our numbers against it."""

from __future__ import annotations

import math

import torch


def hf_labels_perplexity(model, windows: list[torch.Tensor], scored: int) -> float:
    """exp(mean over windows of HF's loss on each window's last ``scored`` tokens)."""
    losses = []
    with torch.inference_mode():
        for window in windows:
            labels = window.clone()
            labels[:-scored] = -100
            out = model(input_ids=window.unsqueeze(0), labels=labels.unsqueeze(0))
            losses.append(out.loss.item())
    return math.exp(sum(losses) / len(losses))
