"""int8 weight-only: weights stored as int8 with a scale per output channel,
run by torch's int8 weight-packed matmul."""

from __future__ import annotations

from dataclasses import dataclass

from core.models.linear_layers import (
    replace_module,
)
from core.models.quantized_linear import Int8WeightOnlyLinear
from core.passes.base import PassContext, ScopedConfig, register


@register
@dataclass(frozen=True)
class Int8WeightOnlyConfig(ScopedConfig):
    name = "int8_weight_only"
    kind = "quantize"
    title = "int8 weight-only"

    def apply(self, model, context: PassContext):
        layers = self.scoped_linears(model)
        for index, (name, linear) in enumerate(layers):
            context.cancel.raise_if_cancelled()
            replace_module(model, name, Int8WeightOnlyLinear.from_linear(linear))
            context.progress_fraction(index + 1, len(layers))
        return model

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import per_channel_int8

        return per_channel_int8(entries, scale_bytes=2, chosen=self.in_scope)  # bf16 scales, bias
