"""SmoothQuant (Xiao et al., 2023): move activation outliers into weights
before W8A8, so per-tensor int8 activations lose less.

For each group of linears reading the same input X, a per-channel scale
s_j = max|X_j|^alpha / max|W_j|^(1-alpha) is measured on calibration text;
X is divided by s (folded into the producer) and W's input columns
multiplied by s, so the model computes the same function in float.

Families differ in where X comes from, so the groups are found from the
model itself, not from its name:
- which norm feeds which linears is traced on a short window (the tensor a
  norm returns is the very tensor the linear receives): Llama's MLP reads
  ``post_attention_layernorm``, Gemma 2/3's reads ``pre_feedforward_layernorm``
  (their ``post_attention_layernorm`` scales the attention output);
- how a norm applies its weight is probed: ``n(x) * w`` (Llama, GPT-2's
  LayerNorm, whose bias is divided too) or ``n(x) * (1 + w)`` (Gemma, folded
  as 1 + w' = (1 + w) / s);
- the MLP's up projection (or the up half of Phi-3's fused gate_up_proj)
  feeds down_proj through ``act(gate) * up``, so its rows absorb the scale.
Every fold is then checked: the layer is rerun on the traced input and must
give its original output; a group that does not (BERT's LayerNorms also feed
the residual stream; an unknown layout) is restored and left unsmoothed, with
a note. o_proj and GPT-2's MLP output are not smoothed (no producer can
absorb a per-channel scale exactly).

Why by hand: the reference implementation lives in research code and
torchao's version is tied to its own quantized tensor subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.passes.blocks import decoder_layers
from core.passes.calibration import run_calibration

TRACE_TOKENS = 64  # enough to trace the wiring and check each fold


@dataclass
class Group:
    """Linears reading one input, and the module whose output that input is."""

    producer: nn.Module
    consumers: list[nn.Linear]
    kind: str  # "scale": n(x) * w, "one_plus": n(x) * (1 + w), "rows": linear rows
    rows: slice  # for "rows": the producer's rows the consumers read (else all)
    label: str


@dataclass
class LayerTrace:
    """One layer's call on the trace window: its arguments and its output."""

    args: tuple
    kwargs: dict
    output: torch.Tensor | None = None


def _first_tensor(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def _is_norm(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (
        not list(module.children())
        and not isinstance(module, (nn.Linear, nn.Embedding))
        and isinstance(weight, nn.Parameter)
        and weight.dim() == 1
    )


@torch.no_grad()
def norm_kind(norm: nn.Module) -> str | None:
    """How the norm applies its weight, probed: it is affine in the weight,
    n(x) * (c + w), so c = out(w=0) / (out(w=1) - out(w=0)); None if neither."""
    weight, bias = norm.weight, getattr(norm, "bias", None)
    saved = [p.detach().clone() for p in (weight, bias) if p is not None]
    x = torch.randn(4, weight.numel(), generator=torch.Generator().manual_seed(0))
    x = (2 * x + 0.5).to(device=weight.device, dtype=weight.dtype)
    try:
        if bias is not None:
            bias.zero_()
        weight.zero_()
        at_zero = _first_tensor(norm(x)).float()
        weight.fill_(1.0)
        at_one = _first_tensor(norm(x)).float()
    except Exception:  # a norm that cannot run on a plain tensor: unknown layout
        return None
    finally:
        for param, value in zip([p for p in (weight, bias) if p is not None], saved, strict=True):
            param.copy_(value)
    unit = (at_one - at_zero).abs().max()
    if unit == 0:
        return None
    if at_zero.abs().max() <= 1e-3 * unit:
        return "scale"
    if torch.allclose(at_zero, at_one - at_zero, rtol=1e-2, atol=1e-3 * float(unit)):
        return "one_plus"
    return None


def _mlp_rows_group(layer: nn.Module) -> Group | None:
    """down_proj reads act(gate) * up: up's rows (or the up half of a fused
    gate_up_proj, which Phi-3 splits as [gate | up]) absorb its scale."""
    mlp = getattr(layer, "mlp", None)
    down = getattr(mlp, "down_proj", None)
    if not isinstance(down, nn.Linear):
        return None
    up = getattr(mlp, "up_proj", None)
    if isinstance(up, nn.Linear) and hasattr(mlp, "gate_proj"):
        return Group(up, [down], "rows", slice(None), "up_proj -> down_proj")
    fused = getattr(mlp, "gate_up_proj", None)
    if isinstance(fused, nn.Linear) and fused.out_features == 2 * down.in_features:
        rows = slice(down.in_features, None)
        return Group(fused, [down], "rows", rows, "gate_up_proj -> down_proj")
    return None


@torch.no_grad()
def trace_groups(model: nn.Module, layers: nn.ModuleList, ids: torch.Tensor, skipped: list[str]):
    """Per layer: its smoothing groups and its call on ``ids`` (for the check);
    the groups that cannot be folded are added to ``skipped``."""
    norm_outputs: dict[nn.Module, torch.Tensor] = {}
    linear_inputs: dict[nn.Module, torch.Tensor] = {}
    traces: dict[int, LayerTrace] = {}
    handles = []

    def keep_output(module, _inputs, output):
        norm_outputs[module] = output

    def keep_input(module, inputs):
        linear_inputs[module] = inputs[0] if inputs else None

    def layer_pre(index):
        def hook(_module, args, kwargs):
            traces[index] = LayerTrace(args, dict(kwargs))

        return hook

    def layer_post(index):
        def hook(_module, _args, _kwargs, output):
            traces[index].output = _first_tensor(output).detach().clone()

        return hook

    for index, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(layer_pre(index), with_kwargs=True))
        handles.append(layer.register_forward_hook(layer_post(index), with_kwargs=True))
        for module in layer.modules():
            if _is_norm(module):
                handles.append(module.register_forward_hook(keep_output))
            elif isinstance(module, nn.Linear):
                handles.append(module.register_forward_pre_hook(keep_input))
    try:
        device = next(model.parameters()).device
        model(input_ids=ids.view(1, -1).to(device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()

    groups: dict[int, list[Group]] = {}
    for index, layer in enumerate(layers):
        names = {module: name for name, module in layer.named_modules()}
        found = []
        for norm in (m for m in layer.modules() if _is_norm(m) and m in norm_outputs):
            consumers = [
                m
                for m in layer.modules()
                if isinstance(m, nn.Linear) and linear_inputs.get(m) is norm_outputs[norm]
            ]
            if not consumers:
                continue
            label = f"{names[norm]} -> {', '.join(names[c] for c in consumers)}"
            kind = norm_kind(norm)
            if kind is None:
                skipped.append(f"{label} (the norm's weight is not a scale)")
                continue
            found.append(Group(norm, consumers, kind, slice(None), label))
        rows = _mlp_rows_group(layer)
        if rows is not None:
            found.append(rows)
        groups[index] = found
    return groups, traces


def _fold(group: Group, scale: torch.Tensor) -> None:
    producer = group.producer
    weight = producer.weight
    s = scale.to(device=weight.device, dtype=torch.float32)
    if group.kind == "rows":  # the producer's output rows feed the consumers' input columns
        rows = weight.data[group.rows]
        rows.copy_((rows.float() / s[:, None]).to(weight.dtype))
        if producer.bias is not None:
            part = producer.bias.data[group.rows]
            part.copy_((part.float() / s).to(part.dtype))
    else:
        if group.kind == "scale":
            weight.copy_((weight.float() / s).to(weight.dtype))
        else:  # one_plus: 1 + w' = (1 + w) / s
            weight.copy_(((1 + weight.float()) / s - 1).to(weight.dtype))
        bias = getattr(producer, "bias", None)
        if bias is not None:
            bias.copy_((bias.float() / s).to(bias.dtype))
    for consumer in group.consumers:
        consumer.weight.copy_((consumer.weight.float() * s[None, :]).to(consumer.weight.dtype))


def _parameters(group: Group) -> list[torch.Tensor]:
    modules = [group.producer, *group.consumers]
    return [p for m in modules for p in (m.weight, getattr(m, "bias", None)) if p is not None]


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-4 if dtype in (torch.float32, torch.float64) else 2e-2


@torch.no_grad()
def smooth(model: nn.Module, calibration, alpha: float, cancel, notes: list | None = None) -> int:
    """Apply SmoothQuant scales in place; returns how many groups were smoothed.
    Groups whose fold would not be exact are left as they are, and said in
    one line added to ``notes``."""
    try:
        layers = decoder_layers(model)
    except ValueError as err:  # ALBERT's shared layers: nothing to fold into, plain W8A8
        if notes is not None:
            notes.append(f"SmoothQuant: {err}")
        return 0
    skipped: list[str] = []
    groups, traces = trace_groups(model, layers, calibration[0][:TRACE_TOKENS], skipped)
    smoothed = 0
    if any(groups.values()):
        scales = measure_scales(model, groups, calibration, alpha, cancel)
        for index, layer in enumerate(layers):
            for group, scale in zip(groups[index], scales[index], strict=True):
                if _fold_checked(layer, traces.get(index), group, scale):
                    smoothed += 1
                else:
                    skipped.append(f"{group.label} (changes the layer's output)")
    if skipped and notes is not None:
        distinct = sorted(set(skipped))
        notes.append(
            f"SmoothQuant: {len(skipped)} group(s) left unsmoothed, their fold would not be "
            f"exact: {'; '.join(distinct[:3])}{' ...' if len(distinct) > 3 else ''}"
        )
    return smoothed


def measure_scales(model, groups, calibration, alpha, cancel) -> dict[int, list[torch.Tensor]]:
    """s = max|X|^alpha / max|W|^(1 - alpha) per input channel of each group."""
    maxima: dict[tuple[int, int], torch.Tensor] = {}

    def hook_for(key):
        def hook(_module, inputs):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float().cpu()
            maxima[key] = x if key not in maxima else torch.maximum(maxima[key], x)

        return hook

    handles = [
        group.consumers[0].register_forward_pre_hook(hook_for((index, i)))
        for index, layer_groups in groups.items()
        for i, group in enumerate(layer_groups)
    ]
    try:
        run_calibration(model, calibration, cancel)
    finally:
        for handle in handles:
            handle.remove()
    scales = {}
    for index, layer_groups in groups.items():
        scales[index] = []
        for i, group in enumerate(layer_groups):
            w_max = torch.stack(
                [c.weight.detach().abs().amax(0).float().cpu() for c in group.consumers]
            ).amax(0)
            x_max = maxima[(index, i)].clamp(min=1e-5)
            scale = x_max**alpha / w_max.clamp(min=1e-5) ** (1 - alpha)
            scales[index].append(scale.clamp(min=1e-5))
    return scales


def _fold_checked(layer: nn.Module, trace: LayerTrace | None, group: Group, scale) -> bool:
    """Fold, and keep it only if the layer still computes what it did."""
    saved = [p.detach().clone() for p in _parameters(group)]
    _fold(group, scale)
    if trace is not None and trace.output is not None and _unchanged(layer, trace):
        return True
    for param, value in zip(_parameters(group), saved, strict=True):
        param.copy_(value)
    return False


def _unchanged(layer: nn.Module, trace: LayerTrace) -> bool:
    """Does the layer, rerun on its traced input, still give its traced output?"""
    try:
        output = _first_tensor(layer(*trace.args, **trace.kwargs))
    except Exception:  # a layer that cannot be rerun alone: unknown layout
        return False
    reference = trace.output.float()
    error = (output.float() - reference).abs().max()
    return bool(error <= _tolerance(trace.output.dtype) * reference.abs().max().clamp(min=1e-6))
