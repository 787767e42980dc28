"""Running calibration text through a model and collecting what passes need:
input statistics of linear layers (for GPTQ and activation-aware methods)."""

from __future__ import annotations

import torch
from torch import nn

from core.progress import CancelToken


def require_calibration(pass_name: str, calibration) -> list[torch.Tensor]:
    if not calibration:
        raise ValueError(f"{pass_name} needs calibration text; none was given.")
    return calibration


@torch.no_grad()
def run_calibration(model: nn.Module, calibration: list[torch.Tensor], cancel: CancelToken):
    device = next(model.parameters()).device
    for ids in calibration:
        cancel.raise_if_cancelled()
        model(input_ids=ids.view(1, -1).to(device), use_cache=False)


@torch.no_grad()
def collect_input_hessians(
    model: nn.Module,
    layers: list[tuple[str, nn.Linear]],
    calibration: list[torch.Tensor],
    cancel: CancelToken,
) -> dict[str, torch.Tensor]:
    """H = 2/n * sum X^T X of each layer's inputs over the calibration tokens."""
    hessians: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str, in_features: int):
        hessians[name] = torch.zeros(in_features, in_features)
        counts[name] = 0

        def hook(_module, inputs, _output):
            x = inputs[0].detach().reshape(-1, in_features).float().cpu()
            n = counts[name]
            counts[name] = n + x.shape[0]
            hessians[name].mul_(n / counts[name]).addmm_(x.t(), x, alpha=2 / counts[name])

        return hook

    handles = [
        module.register_forward_hook(hook_for(name, module.in_features)) for name, module in layers
    ]
    try:
        run_calibration(model, calibration, cancel)
    finally:
        for handle in handles:
            handle.remove()
    return hessians


def calibration_windows(tokenizer, count: int = 16, length: int = 256, source: str | None = None):
    """Token windows from the fixed calibration split (never the report or dev
    split): each calibration document in order, cut into ``length``-token
    windows, until ``count`` windows. Built like the evaluation windows: each
    starts with BOS where the tokenizer adds one (``core.data.tokens``)."""
    from core.data.texts import NEWS, calibration_texts
    from core.data.tokens import bos_to_prepend, with_bos

    bos = bos_to_prepend(tokenizer)
    windows: list[torch.Tensor] = []
    for text in calibration_texts(source or NEWS):
        ids = torch.tensor(
            tokenizer(text, add_special_tokens=False, verbose=False).input_ids, dtype=torch.long
        )
        for start in range(0, ids.numel() - length + 1, length):
            windows.append(with_bos(ids[start : start + length], bos))
            if len(windows) == count:
                return windows
    if not windows:
        raise ValueError("the calibration split is empty")
    return windows


def classifier_calibration(tokenizer, count: int = 128, max_length: int = 64):
    """Calibration inputs for the sentiment classifier: the first ``count``
    review snippets of the sentiment TRAIN split (never the test split its
    accuracy is reported on), each encoded as the classifier sees it."""
    from core.data.sentiment import sentiment_split

    reviews = sentiment_split("train")[:count]
    return [
        torch.tensor(
            tokenizer(text, truncation=True, max_length=max_length).input_ids, dtype=torch.long
        )
        for text, _ in reviews
    ]
