"""What the loss-aware low-rank pass reads from calibration text, in one
forward and backward pass per window: for every block linear, the Gram
matrix of its inputs (X^T X per token, what SVD-LLM whitens with) and the
mean squared gradient of the loss with respect to each of its outputs (the
diagonal Fisher information of the outputs, what Fisher-weighted SVD,
Hsu et al. 2022, weights the output side with).

The loss is the model's own: next-token cross-entropy on the window for a
language model, cross-entropy against its own prediction for a classifier
(no labels are read). Weights get no gradients: only the input embeddings
are marked, so the backward pass computes what the hooks need and nothing
more; every parameter's flag is restored afterwards.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from core.errors import UnsupportedModelError
from core.progress import CancelToken


def calibration_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 3:  # a language model: predict each next token of the window
        return functional.cross_entropy(logits[0, :-1].float(), ids[1:].to(logits.device))
    return functional.cross_entropy(logits.float(), logits.argmax(-1))


def collect_loss_statistics(
    model: nn.Module,
    layers: list[tuple[str, nn.Linear]],
    calibration: list[torch.Tensor],
    cancel: CancelToken,
    with_gradients: bool = True,
    on_window=None,
    pass_name: str = "low_rank_aware",
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(grams, output_fisher): per linear, the mean over calibration tokens of
    x^T x (in x in) and of (dL/dy)^2 per output (empty without gradients).
    ``on_window(done, total)`` is called after each window."""
    embed = getattr(model, "get_input_embeddings", lambda: None)()
    if embed is None:
        raise UnsupportedModelError(
            f"{pass_name}: this model has no input embeddings to feed calibration text through"
        )
    grams = {name: torch.zeros(m.in_features, m.in_features) for name, m in layers}
    fisher = {name: torch.zeros(m.out_features) for name, m in layers} if with_gradients else {}

    def hook_for(name: str, linear: nn.Linear):
        def on_gradient(grad):
            g = grad.detach().reshape(-1, linear.out_features).float()
            fisher[name].add_(g.pow(2).sum(0).cpu())

        def hook(_module, inputs, output):
            x = inputs[0].detach().reshape(-1, linear.in_features).float().cpu()
            grams[name].addmm_(x.t(), x)
            if with_gradients and output.requires_grad:
                output.register_hook(on_gradient)

        return hook

    flags = [(p, p.requires_grad) for p in model.parameters()]
    handles = [m.register_forward_hook(hook_for(name, m)) for name, m in layers]
    device = next(model.parameters()).device
    tokens = 0
    try:
        model.requires_grad_(False)
        for done, ids in enumerate(calibration, 1):
            cancel.raise_if_cancelled()
            ids = ids.view(-1).to(device)
            with torch.inference_mode(False), torch.set_grad_enabled(with_gradients):
                embeds = embed(ids.view(1, -1)).detach().requires_grad_(with_gradients)
                out = model(inputs_embeds=embeds, use_cache=False)
                if with_gradients:
                    calibration_loss(out.logits, ids).backward()
            tokens += ids.numel()
            if on_window is not None:
                on_window(done, len(calibration))
    finally:
        for handle in handles:
            handle.remove()
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
    for table in (grams, fisher):
        for value in table.values():
            value.div_(tokens)
    return grams, fisher
