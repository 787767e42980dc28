"""Structured: remove MLP neurons. The MLP matrices physically shrink, so
size and time fall for real. Which neurons go is measured on calibration
text: mean |activation| entering the down projection times the norm of the
weights it feeds (the neuron's contribution to the output)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.models.linear_layers import replace_module
from core.passes.base import PassConfig, PassContext, option, register
from core.passes.blocks import (
    decoder_layers,
    linear_role,
    mlp_parts,
    mlp_width_field,
    module_path,
    prepare_for_structured_pruning,
    set_mlp_width,
    slice_linear,
)
from core.passes.calibration import require_calibration, run_calibration


@register
@dataclass(frozen=True)
class PruneMlpConfig(PassConfig):
    name = "prune_mlp"
    kind = "prune"
    title = "Remove MLP neurons (structured)"
    needs_calibration = True
    fraction: float = option(
        0.25,
        label="neurons removed",
        description="fraction of each layer's MLP neurons removed (least important first)",
        minimum=0.0,
        maximum=0.9,
        step=0.05,
    )

    def apply(self, model, context: PassContext):
        prepare_for_structured_pruning(model, self.name)
        mlp_width_field(model.config, self.name)  # a family without the field: refused first
        calibration = require_calibration(self.name, context.calibration)
        layers = decoder_layers(model)
        scores = measure_neuron_importance(model, layers, calibration, context)
        width = mlp_parts(layers[0])[1].in_features
        keep = width - round(self.fraction * width)
        for index, layer in enumerate(layers):
            remove_neurons(model, layer, scores[index], keep)
        set_mlp_width(model.config, keep, self.name)
        return model

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import resized

        def role(e):
            return linear_role(e.name) if e.is_linear and e.component == "mlp" else None

        width = next(e.in_features for e in entries if role(e) == "down")
        keep = width - round(self.fraction * width)
        out = []
        for e in entries:
            if role(e) == "up":  # a fused [gate | up] projection is parts x width
                e = resized(e, out_features=keep * (e.out_features // width))
            elif role(e) == "down":
                e = resized(e, in_features=keep)
            out.append(e)
        return out


def remove_neurons(model, layer, scores: torch.Tensor, keep: int) -> None:
    """Keep the ``keep`` neurons of ``layer``'s MLP that score highest (the
    sensitivity map's probe prunes one layer with it)."""
    ups, down = mlp_parts(layer)
    width = down.in_features
    kept = torch.topk(scores, keep).indices.sort().values
    prefix = module_path(model, layer)
    for up in ups:
        # A fused [gate | up] projection keeps the same neurons in each part.
        rows = torch.cat([kept + part * width for part in range(up.out_features // width)])
        replace_module(model, f"{prefix}.{module_path(layer, up)}", slice_linear(up, rows=rows))
    replace_module(model, f"{prefix}.{module_path(layer, down)}", slice_linear(down, columns=kept))
    mlp = getattr(layer, "mlp", None)  # BERT's MLP is not one module
    if hasattr(mlp, "intermediate_size"):  # keep the module's record true
        mlp.intermediate_size = keep


@torch.no_grad()
def measure_neuron_importance(model, layers, calibration, context) -> list[torch.Tensor]:
    sums = [None] * len(layers)

    def hook_for(i):
        def hook(_module, inputs):
            x = inputs[0].detach().abs().float().reshape(-1, inputs[0].shape[-1]).sum(0)
            sums[i] = x if sums[i] is None else sums[i] + x

        return hook

    handles = [
        mlp_parts(layer)[1].register_forward_pre_hook(hook_for(i)) for i, layer in enumerate(layers)
    ]
    try:
        context.progress_fraction(0, 1, "Measuring MLP neuron importance")
        run_calibration(model, calibration, context.cancel)
    finally:
        for handle in handles:
            handle.remove()
    return [
        sums[i].cpu() * mlp_parts(layer)[1].weight.detach().float().norm(dim=0).cpu()
        for i, layer in enumerate(layers)
    ]
