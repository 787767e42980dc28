"""Does an exported graph compute what the PyTorch model computes?

Both read the same windows of real text (the report split's perplexity
windows, shortened to fit small models); at every position we compare the
logits: the largest absolute difference, top-1 agreement and mean
KL(PyTorch || ONNX). An fp32 export must match to float rounding: top-1 >=
99.9% and max |logit diff| < 1e-3. An int8 graph changes the numbers by
design, so it is judged by top-1 and KL only, with loose bounds that catch a
broken graph (wrong weights give near-chance top-1), not a lossy one; its
measured values are reported as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.progress import CancelToken

FP32_MIN_TOP1 = 0.999
FP32_MAX_ABS = 1e-3
# Measured on the default model (SmolLM2-135M, 4 windows of 256 tokens):
# onnxruntime's dynamic int8 (per-tensor activations, no SmoothQuant) gives
# top-1 0.59 and KL 0.60; random tiny models give more.
INT8_MIN_TOP1 = 0.45
INT8_MAX_KL = 1.5
CHECK_WINDOWS = 4
CHECK_CONTEXT = 256


@dataclass(frozen=True)
class OnnxFidelity:
    windows: int
    positions: int
    max_abs_logit_diff: float
    top1_agreement: float
    mean_kl: float  # nats per position, KL(PyTorch || ONNX)
    int8: bool
    passed: bool
    criteria: str

    def failure(self) -> str:
        return (
            f"the exported graph does not match the PyTorch model on {self.positions} positions: "
            f"top-1 {self.top1_agreement:.2%}, max |logit diff| {self.max_abs_logit_diff:.3g}, "
            f"KL {self.mean_kl:.3g} (needs {self.criteria})"
        )


def criteria(int8: bool) -> str:
    if int8:
        return f"top-1 >= {INT8_MIN_TOP1:.0%} and KL <= {INT8_MAX_KL:g}"
    return f"top-1 >= {FP32_MIN_TOP1:.1%} and max |logit diff| < {FP32_MAX_ABS:g}"


def check_windows(tokenizer, config) -> list[torch.Tensor]:
    """Windows of the report split that fit the model's context."""
    from core.evaluate.perplexity import PerplexityProtocol, perplexity_windows
    from core.runtime.generation import context_length

    context = min(CHECK_CONTEXT, context_length(config))
    protocol = PerplexityProtocol(
        context_tokens=context, stride=context // 2, quick_windows=CHECK_WINDOWS
    )
    return perplexity_windows(tokenizer, protocol)


@torch.inference_mode()
def compare_logits(
    torch_model, ort_model, windows: list[torch.Tensor], int8: bool, cancel: CancelToken
) -> OnnxFidelity:
    device = next(torch_model.parameters()).device
    max_abs, agree, kl_sum, positions = 0.0, 0, 0.0, 0
    for window in windows:
        cancel.raise_if_cancelled()
        ids = window.unsqueeze(0)
        reference = torch_model(input_ids=ids.to(device)).logits[0].float().cpu()
        candidate = ort_model(input_ids=ids).logits[0].float()
        max_abs = max(max_abs, (reference - candidate).abs().max().item())
        agree += int((reference.argmax(-1) == candidate.argmax(-1)).sum())
        ref_logp, cand_logp = reference.log_softmax(-1), candidate.log_softmax(-1)
        kl_sum += (ref_logp.exp() * (ref_logp - cand_logp)).sum().item()
        positions += window.numel()
    top1, kl = agree / positions, kl_sum / positions
    if int8:
        passed = top1 >= INT8_MIN_TOP1 and kl <= INT8_MAX_KL
    else:
        passed = top1 >= FP32_MIN_TOP1 and max_abs < FP32_MAX_ABS
    return OnnxFidelity(len(windows), positions, max_abs, top1, kl, int8, passed, criteria(int8))
