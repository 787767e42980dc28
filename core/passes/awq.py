"""AWQ (Lin et al., 2024): activation-aware scales for int4 weights.

A few input channels carry most of a layer's activation; their weights
matter most. Per group of linears reading one input X, AWQ scales W's input
columns by s = mean|X|^alpha (X divided by s in exchange), so the salient
columns span more of their group's 4-bit grid, and searches alpha on a grid
for the smallest output error || X W^T - (X / s) Q(W s)^T || on calibration
text. Then, per 4-bit group, it searches how far to clip the weights' range
(a narrower grid rounds most weights better and a few outliers worse).

The division of X is folded exactly into the op that produces X, using
SmoothQuant's tracing and checked folds (``core.passes.smooth_quant``): the
norm before q/k/v and before the MLP (Llama, Qwen2, Phi-3, Gemma 2, GPT-2's
LayerNorm), the up projection's rows before down_proj, and v's rows before
o_proj (``core.passes.value_fold``) when every query head has its own value
head. A fold that would change the layer's output is undone; a linear with
no exact place for a scale (GPT-2's MLP c_proj after GELU, o_proj under
grouped-query attention unless SHARED_VALUE_SCALES, or wherever a fold
fails) gets the clipping search only, and a note says how many.

Errors are measured through each linear's input Hessian H = 2/n X^T X
(``core.passes.calibration``): || X dW^T ||^2 = tr(dW H dW^T) over every
calibration token, with no activations kept. The objective is each linear's
own output, as the brief of this pass says, not the whole attention block's
(the reference inspects the block for q/k/v and the MLP).

Why by hand: the reference (mit-han-lab/llm-awq) and AutoAWQ are CUDA
research code with their own module types; the search itself is short.
Written from the paper and the reference's auto_scale/auto_clip.
"""

from __future__ import annotations

import torch
from torch import nn

from core.models.quantized_linear import pad_columns, quantize_groupwise_int4
from core.passes.blocks import decoder_layers, linear_role
from core.passes.calibration import collect_input_hessians

# SmoothQuant's checked fold is reused as it is (a private name: choose_defaults
# records smooth_quant.py's hash, so that file is left unchanged).
from core.passes.smooth_quant import TRACE_TOKENS, trace_groups
from core.passes.smooth_quant import _fold_checked as fold_checked
from core.passes.value_fold import ValueGroup, fold_value_checked, value_output_group

# The reference's grids: alpha 0, 0.05 .. 0.95 (0 leaves the layer as it is);
# clipping keeps 100%, 95% .. 55% of each group's largest magnitude.
ALPHAS = tuple(i / 20 for i in range(20))
CLIP_KEEP = tuple(1 - i / 20 for i in range(10))
# Chosen on the dev split (benchmarks/int4_quality.py --dev-choices, default
# model, g128; fp32 dev ppl 32.05): clipping every linear 35.42, every one but
# queries and keys (the reference's rule) 35.80, no clipping 38.15.
CLIP_QUERIES_AND_KEYS = True
# Under grouped-query attention, o_proj's scale can still fold into v's rows
# if the columns one value channel feeds share it (exact, tested); on the dev
# split it did worse (35.75 against 35.42 without, same settings), so o_proj
# then gets only the clipping search, as in the reference.
SHARED_VALUE_SCALES = False


@torch.no_grad()
def fold_awq_scales(model: nn.Module, layers, calibration, group_size: int, context):
    """Search and fold AWQ scales into ``model`` (in place); returns each
    block linear's input Hessian as its (now scaled) input sees it."""
    names = {module: name for name, module in layers}
    context.progress_fraction(0, 1, "AWQ: collecting calibration statistics")
    hessians, mean_abs = _input_statistics(model, layers, calibration, context.cancel)
    blocks = decoder_layers(model)
    skipped: list[str] = []
    groups, traces = trace_groups(model, blocks, calibration[0][:TRACE_TOKENS], skipped)
    scaled: set[str] = set()
    for index, block in enumerate(blocks):
        context.cancel.raise_if_cancelled()
        value_group = value_output_group(block)
        if value_group is not None and value_group.repeat > 1 and not SHARED_VALUE_SCALES:
            value_group = None
        for group in [*groups.get(index, []), *([value_group] if value_group else [])]:
            consumers = [names.get(c) for c in group.consumers]
            if None in consumers:
                continue
            by_value = isinstance(group, ValueGroup)
            statistic = mean_abs[consumers[0]]
            if by_value:  # o_proj columns fed by one value channel share a scale
                statistic = group.shared(statistic)
            weight = torch.cat([c.weight.detach().float().cpu() for c in group.consumers])
            scale = search_scale(weight, hessians[consumers[0]], statistic, group_size)
            fold = fold_value_checked if by_value else fold_checked
            if scale is None:  # alpha 0 won: nothing to fold
                scaled.update(consumers)
            elif fold(block, traces.get(index), group, scale):
                for name in consumers:
                    hessians[name] = hessians[name] / scale[:, None] / scale[None, :]
                scaled.update(consumers)
            else:
                skipped.append(f"{group.label} (changes the layer's output)")
        context.progress_fraction(index + 1, len(blocks), "AWQ: searching scales")
    unscaled = [name for name, _ in layers if name not in scaled]
    if unscaled:
        kinds = sorted({".".join(name.split(".")[-2:]) for name in unscaled})
        context.notes.append(
            f"AWQ: {len(unscaled)} of {len(layers)} linears have no exact place to fold a "
            f"scale ({', '.join(kinds[:4])}{' ...' if len(kinds) > 4 else ''}); "
            "only their clipping was searched"
        )
    return hessians


def _input_statistics(model, layers, calibration, cancel):
    """Each linear's input Hessian and mean |x| per input channel, in one
    pass over the calibration text."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str):
        def hook(_module, inputs):
            x = inputs[0].detach()
            x = x.reshape(-1, x.shape[-1]).float()
            total = x.abs().sum(0).cpu()
            sums[name] = total if name not in sums else sums[name] + total
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    handles = [module.register_forward_pre_hook(hook_for(name)) for name, module in layers]
    try:
        hessians = collect_input_hessians(model, layers, calibration, cancel)
    finally:
        for handle in handles:
            handle.remove()
    return hessians, {name: sums[name] / counts[name] for name in sums}


def dequantized_error(weight, scale, hessian, group_size) -> float:
    """tr(dW H dW^T) for W's int4 round trip taken on W * s (inputs / s)."""
    k = weight.shape[1]
    scaled = pad_columns(weight * scale[None, :], group_size)
    q, step, lo = quantize_groupwise_int4(scaled, group_size)
    n, kp = q.shape
    back = (q.view(n, -1, group_size) * step[..., None] + lo[..., None]).view(n, kp)[:, :k]
    delta = weight - back / scale[None, :]
    return float(((delta @ hessian) * delta).sum())


def search_scale(weight, hessian, mean_abs, group_size) -> torch.Tensor | None:
    """The per-input-channel scale of the best alpha; None when alpha 0 (no
    scale) is best."""
    best_error, best = float("inf"), None
    for alpha in ALPHAS:
        scale = mean_abs.pow(alpha).clamp(min=1e-4)
        scale = scale / (scale.max() * scale.min()).sqrt()
        error = dequantized_error(weight, scale, hessian, group_size)
        if error < best_error:
            best_error, best = error, (None if alpha == 0 else scale)
    return best


def clips(name: str) -> bool:
    """Whether to search clipping for this linear. The reference skips
    queries and keys (their errors meet in q.k, not at their outputs); here
    every linear is clipped (CLIP_QUERIES_AND_KEYS, chosen on dev)."""
    if CLIP_QUERIES_AND_KEYS:
        return True
    return linear_role(name) not in ("q", "qkv") and not name.endswith(("k_proj", ".key"))


@torch.no_grad()
def clipped_quantize(weight: torch.Tensor, hessian: torch.Tensor, group_size: int, clip: bool):
    """(q, scale, minimum) of round-to-nearest int4 after clamping each group
    of each row to +-keep * its largest magnitude, keep searched per group
    for the smallest output error (the group's diagonal block of H; as the
    reference, errors of different groups are taken as independent)."""
    w = pad_columns(weight.detach().float().cpu(), group_size)
    n, k = w.shape
    g = k // group_size
    h = torch.zeros(k, k)
    h[: hessian.shape[0], : hessian.shape[1]] = hessian
    starts = range(0, k, group_size)
    blocks = torch.stack([h[i : i + group_size, i : i + group_size] for i in starts])
    groups = w.view(n, g, group_size)
    peak = groups.abs().amax(-1, keepdim=True)
    best_error = torch.full((n, g, 1), float("inf"))
    best_limit = peak.clone()
    for keep in CLIP_KEEP if clip else (1.0,):
        limit = peak * keep
        clamped = torch.maximum(torch.minimum(groups, limit), -limit).reshape(n, k)
        q, step, lo = quantize_groupwise_int4(clamped, group_size)
        delta = groups - (q.view(n, g, group_size) * step[..., None] + lo[..., None])
        # delta_g H_g delta_g^T per row and group: [g, n, G] x [g, G, G]
        moved = torch.bmm(delta.transpose(0, 1), blocks).transpose(0, 1)
        error = (moved * delta).sum(-1, keepdim=True)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_limit = torch.where(better, limit, best_limit)
    clamped = torch.maximum(torch.minimum(groups, best_limit), -best_limit).reshape(n, k)
    return quantize_groupwise_int4(clamped, group_size)
