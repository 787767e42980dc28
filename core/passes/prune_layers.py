"""Structured: drop whole decoder layers, chosen by a measured importance
score: Block Influence (ShortGPT, Men et al. 2024), one minus the mean
cosine similarity between a layer's input and output hidden states on
calibration text. The layers that change their input least go first."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.passes.base import PassConfig, PassContext, option, register
from core.passes.blocks import config_set, decoder_layers, prepare_for_structured_pruning
from core.passes.calibration import require_calibration, run_calibration


@register
@dataclass(frozen=True)
class PruneLayersConfig(PassConfig):
    name = "prune_layers"
    kind = "prune"
    title = "Drop decoder layers (structured)"
    needs_calibration = True
    count: int = option(
        2,
        label="layers dropped",
        description="number of whole decoder layers removed (lowest Block Influence first)",
        minimum=0,
        maximum=64,
        step=1,
    )

    def apply(self, model, context: PassContext):
        prepare_for_structured_pruning(model, self.name)
        layers = decoder_layers(model)
        if self.count >= len(layers):
            raise ValueError(f"prune_layers: cannot drop {self.count} of {len(layers)} layers")
        if self.count == 0:
            return model
        calibration = require_calibration(self.name, context.calibration)
        influence = measure_block_influence(model, layers, calibration, context)
        dropped = set(torch.topk(influence, self.count, largest=False).indices.tolist())
        drop_layers(model, layers, dropped)
        context.notes.append(f"prune_layers: dropped layers {sorted(dropped)}")
        return model

    def estimate(self, entries, model_config):
        layers = sorted({e.layer for e in entries if e.layer is not None})
        dropped = set(layers[len(layers) - self.count :]) if self.count else set()
        return [e for e in entries if e.layer not in dropped]


def drop_layers(model, layers: nn.ModuleList, dropped: set[int]) -> None:
    """Remove the decoder layers numbered in ``dropped`` from ``model`` (the
    sensitivity map's probe drops one layer with it)."""
    kept = [layer for i, layer in enumerate(layers) if i not in dropped]
    for new_index, layer in enumerate(kept):
        # The KV cache is indexed by layer_idx; renumber so it stays dense.
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    parent_path = next(n for n, m in model.named_modules() if m is layers)
    parent = model.get_submodule(parent_path.rpartition(".")[0])
    setattr(parent, parent_path.rpartition(".")[2], nn.ModuleList(kept))
    config_set(model.config, len(kept), "num_hidden_layers", "n_layer")
    layer_types = getattr(model.config, "layer_types", None)
    if layer_types:
        model.config.layer_types = [t for i, t in enumerate(layer_types) if i not in dropped]


@torch.no_grad()
def measure_block_influence(model, layers, calibration, context) -> torch.Tensor:
    totals = torch.zeros(len(layers))
    counts = torch.zeros(len(layers))
    inputs: dict[int, torch.Tensor] = {}

    def pre_hook_for(i):
        def hook(_module, args, kwargs):
            inputs[i] = (args[0] if args else kwargs["hidden_states"]).detach()

        return hook

    def hook_for(i):
        def hook(_module, _args, output):
            out = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(inputs.pop(i).float(), out.float(), dim=-1)
            totals[i] += (1 - cos).sum().cpu()
            counts[i] += cos.numel()

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(pre_hook_for(i), with_kwargs=True))
        handles.append(layer.register_forward_hook(hook_for(i)))
    try:
        context.progress_fraction(0, 1, "Measuring layer importance (Block Influence)")
        run_calibration(model, calibration, context.cancel)
    finally:
        for handle in handles:
            handle.remove()
    return totals / counts.clamp(min=1)
