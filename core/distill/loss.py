"""The distillation loss (Hinton et al. 2015), written out because it is a
few lines of torch and no maintained library ships it for causal LMs in a
form we could call on one batch:

    loss = T^2 * KL(softmax(teacher / T) || softmax(student / T))   (every position)
         + alpha * cross-entropy(student, next token)                (optional)
         + beta  * MSE(student hidden, teacher hidden), matched layers (optional)

The T^2 keeps the gradient's size independent of T. KL is averaged over
tokens (``batchmean`` over the flattened positions), which is what the
T^2 scaling assumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor  # what backward() runs on
    kd: float
    lm: float | None  # None when alpha is 0 (not computed)
    hidden: float | None  # None when beta is 0


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float):
    """T^2 * mean over tokens of KL(teacher_T || student_T)."""
    vocab = student_logits.shape[-1]
    s = F.log_softmax(student_logits.reshape(-1, vocab).float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.reshape(-1, vocab).float() / temperature, dim=-1)
    kl = F.kl_div(s, t, log_target=True, reduction="batchmean")
    return kl * temperature**2


def lm_cross_entropy(student_logits: torch.Tensor, input_ids: torch.Tensor):
    """Next-token cross-entropy on the batch itself (positions 0..n-2 predict 1..n-1)."""
    vocab = student_logits.shape[-1]
    return F.cross_entropy(
        student_logits[:, :-1].reshape(-1, vocab).float(), input_ids[:, 1:].reshape(-1)
    )


def hidden_mse(student_hidden, teacher_hidden, layer_map: list[int]):
    """Mean squared error between each student layer's output and the output
    of the teacher layer it was copied from (hidden_states[i + 1] is the
    output of layer i), averaged over layers. The last student layer is left
    out: transformers returns it after the final norm, and the logits (the KL
    term) already pin it down."""
    if len(layer_map) < 2:
        raise ValueError("the hidden-state loss needs a student with at least two layers")
    errors = [
        F.mse_loss(student_hidden[i + 1].float(), teacher_hidden[t + 1].float())
        for i, t in enumerate(layer_map[:-1])
    ]
    return torch.stack(errors).mean()


def distillation_loss(
    student_out,
    teacher_out,
    input_ids: torch.Tensor,
    temperature: float,
    alpha: float = 0.0,
    beta: float = 0.0,
    layer_map: list[int] | None = None,
) -> LossParts:
    kd = kd_kl(student_out.logits, teacher_out.logits, temperature)
    total = kd
    lm = hidden = None
    if alpha:
        lm_loss = lm_cross_entropy(student_out.logits, input_ids)
        total = total + alpha * lm_loss
        lm = lm_loss.item()
    if beta:
        h = hidden_mse(student_out.hidden_states, teacher_out.hidden_states, layer_map or [])
        total = total + beta * h
        hidden = h.item()
    return LossParts(total, kd.item(), lm, hidden)
