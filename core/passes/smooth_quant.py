"""SmoothQuant (Xiao et al., 2023): move activation outliers into weights
before W8A8, so per-tensor int8 activations lose less.

For each group of linears reading the same input X, a per-channel scale
s_j = max|X_j|^alpha / max|W_j|^(1-alpha) is measured on calibration text;
X is divided by s (folded into the producer: the preceding norm's weight,
or the rows of up_proj for down_proj) and W's input columns multiplied by s,
so the model computes the same function in float. Supports Llama-style
blocks (RMSNorm producers) and GPT-2 (LayerNorm weight and bias); o_proj
and GPT-2's MLP output are left unsmoothed (their producers cannot absorb a
per-channel scale exactly). BERT has no group that can: it normalises after
the residual add, so its LayerNorms also feed the residual stream, and a GELU
sits between intermediate.dense and output.dense; ``smooth`` returns 0 there.

Why by hand: the reference implementation lives in research code and
torchao's version is tied to its own quantized tensor subclasses.
"""

from __future__ import annotations

import torch
from torch import nn

from core.passes.blocks import decoder_layers
from core.passes.calibration import run_calibration


def smoothing_groups(layer: nn.Module) -> list[tuple[nn.Module, list[nn.Linear], str]]:
    """(producer, consumers, producer kind) for one decoder layer."""
    groups = []
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    if attn is not None and hasattr(attn, "q_proj"):
        groups.append((layer.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj], "norm"))
        groups.append((layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], "norm"))
        groups.append((mlp.up_proj, [mlp.down_proj], "rows"))
    elif hasattr(layer, "attn") and isinstance(getattr(layer.attn, "c_attn", None), nn.Linear):
        groups.append((layer.ln_1, [layer.attn.c_attn], "norm"))
        groups.append((layer.ln_2, [layer.mlp.c_fc], "norm"))
    return groups


@torch.no_grad()
def smooth(model: nn.Module, calibration, alpha: float, cancel) -> int:
    """Apply SmoothQuant scales in place; returns how many groups were smoothed."""
    groups = [g for layer in decoder_layers(model) for g in smoothing_groups(layer)]
    if not groups:
        return 0
    maxima: dict[int, torch.Tensor] = {}

    def hook_for(key):
        def hook(_module, inputs):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float().cpu()
            maxima[key] = x if key not in maxima else torch.maximum(maxima[key], x)

        return hook

    handles = [
        consumers[0].register_forward_pre_hook(hook_for(i))
        for i, (_, consumers, _) in enumerate(groups)
    ]
    try:
        run_calibration(model, calibration, cancel)
    finally:
        for handle in handles:
            handle.remove()

    for i, (producer, consumers, kind) in enumerate(groups):
        w_max = torch.stack(
            [c.weight.detach().abs().amax(0).float().cpu() for c in consumers]
        ).amax(0)
        scale = (maxima[i].clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)).clamp(
            min=1e-5
        )
        device_scale = scale.to(producer.weight.device)
        if kind == "norm":
            producer.weight.div_(device_scale.to(producer.weight.dtype))
            if getattr(producer, "bias", None) is not None:
                producer.bias.div_(device_scale.to(producer.bias.dtype))
        else:  # the producer's output rows feed the consumer's input columns
            producer.weight.div_(device_scale.to(producer.weight.dtype)[:, None])
            if producer.bias is not None:
                producer.bias.div_(device_scale.to(producer.bias.dtype))
        for consumer in consumers:
            consumer.weight.mul_(device_scale.to(consumer.weight.dtype)[None, :])
    return len(groups)
