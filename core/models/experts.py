"""A mixture of experts' expert layers, as transformers 5 builds them: one
module per block holding every expert as 3-D tensors (experts along the first
axis), wrapped by ``transformers.integrations.moe.use_experts_implementation``
(which gives it ``_apply_gate``) and run by the implementation its config
names."""

from __future__ import annotations


def experts_layers(model) -> list:
    """The model's expert layers (empty for a dense model)."""
    return [
        module
        for module in model.modules()
        if hasattr(module, "_apply_gate") and getattr(module, "num_experts", None)
    ]
