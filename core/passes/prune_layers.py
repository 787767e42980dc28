"""Structured: drop whole decoder layers, chosen by a measured importance
score: Block Influence (ShortGPT, Men et al. 2024), one minus the mean
cosine similarity between a layer's input and output hidden states on
calibration text. The layers that change their input least go first.

Dropping a layer needs nothing of its insides, so unlike the other
structured passes this one runs on any family whose blocks sit in one
list (OPT, Falcon, GPT-NeoX, BLOOM, GPT-J, MoE families, Mamba...). What a
family's config says per layer (attention kinds, layers without RoPE, the
MoE layers' indices) is cut or renumbered with the layers, so the export
rebuilds the same model; a family that places layers by a rule on the
index instead (``decoder_sparse_step``) is caught by the export's reload
check rather than guessed here."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.models.config_check import text_config
from core.passes.base import PassConfig, PassContext, option, register
from core.passes.blocks import config_set, decoder_layers
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

    def model_refusal(self, model_config) -> str | None:
        layers = getattr(model_config, "num_hidden_layers", None)
        if isinstance(layers, int) and self.count >= layers:
            return f"prune_layers: cannot drop {self.count} of {layers} layers"
        return None

    def apply(self, model, context: PassContext):
        try:
            layers = decoder_layers(model)
        except ValueError as err:
            raise UnsupportedModelError(f"{self.name}: {err}") from None
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
    _cut_per_layer_fields(model.config, len(layers), dropped)


# Config fields with one entry per layer, by the families that have them
# (transformers reads each as ``config.<name>[layer_idx]``).
PER_LAYER_FIELDS = (
    "layer_types", "no_rope_layers", "mlp_layer_types", "kv_sharing_modes", "indexer_types",
    "layers_block_type", "layer_rope_theta", "layers_num_experts", "per_layer_config",
    "swiglu_limits", "swiglu_limits_shared",
)  # fmt: skip
# Config fields listing layer indices (``layer_idx in config.<name>``).
LAYER_INDEX_FIELDS = ("mlp_only_layers", "moe_layers", "rope_scaling_layers")


def _cut_per_layer_fields(config, count: int, dropped: set[int]) -> None:
    renumber = {}
    for old in range(count):
        if old not in dropped:
            renumber[old] = len(renumber)
    text = text_config(config)
    for part in (config,) if text is config else (config, text):
        for name in PER_LAYER_FIELDS:
            value = getattr(part, name, None)
            if isinstance(value, (list, tuple)) and len(value) == count:
                setattr(part, name, [v for i, v in enumerate(value) if i not in dropped])
        for name in LAYER_INDEX_FIELDS:
            value = getattr(part, name, None)
            if isinstance(value, (list, tuple)):
                setattr(part, name, [renumber[i] for i in value if i in renumber])


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
