"""Unstructured magnitude pruning with torch.nn.utils.prune.

Honest label: the zeros are stored dense, so size and speed do not change
(dense kernels multiply zeros as fast as anything else); they pay off only
when exported in a sparse format at very high sparsity. The pass reports
this note with its results.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.nn.utils import prune

from core.models.linear_layers import (
    linears_to_change,
)
from core.passes.base import PassConfig, PassContext, option, register

DENSE_NOTE = (
    "Unstructured pruning stores zeros dense: size and speed are unchanged "
    "unless the model is exported sparse at very high sparsity."
)


@register
@dataclass(frozen=True)
class PruneUnstructuredConfig(PassConfig):
    name = "prune_unstructured"
    kind = "prune"
    title = "Unstructured magnitude pruning (zeros, dense storage)"
    sparsity: float = option(
        0.5,
        label="sparsity",
        description="fraction of block weights set to zero (smallest magnitude first)",
        minimum=0.0,
        maximum=0.95,
        step=0.05,
    )
    scope: str = option(
        "per_layer",
        label="scope",
        description="per_layer: the same fraction in every layer; global: one threshold for all",
        choices=("per_layer", "global"),
    )

    def apply(self, model, context: PassContext):
        layers = [module for _, module in linears_to_change(self.name, model)]
        if self.scope == "global":
            prune.global_unstructured(
                [(m, "weight") for m in layers],
                pruning_method=prune.L1Unstructured,
                amount=self.sparsity,
            )
        else:
            for module in layers:
                prune.l1_unstructured(module, "weight", amount=self.sparsity)
        for module in layers:
            prune.remove(module, "weight")  # make the zeros permanent, drop the mask
        context.notes.append(DENSE_NOTE)
        return model
