"""W8A8: int8 weights (per output channel) and int8 activations quantised
dynamically per token, multiplied in int8 (core.models.quantized_linear)."""

from __future__ import annotations

from dataclasses import dataclass

from core.models.linear_layers import (
    block_linears,
    linears_to_change,
)
from core.models.quantized_linear import Int8DynamicLinear
from core.passes.base import PassConfig, PassContext, option, register
from core.passes.calibration import require_calibration
from core.passes.smooth_quant import smooth


@register
@dataclass(frozen=True)
class Int8DynamicConfig(PassConfig):
    name = "int8_dynamic"
    version = 2  # 2: per-token int8 activations (1 was fbgemm's per-tensor, 7-bit)
    kind = "quantize"
    title = "W8A8 (int8 weights, dynamic int8 activations)"
    smooth_alpha: float = option(
        # chosen on the dev split (benchmarks/choose_defaults.py, SmolLM2): KL to fp32
        # 0.0108 at 0.6 against 0.0130 at 0.5, 0.0125 at 0.7; dev perplexity +0.37%
        0.6,
        label="SmoothQuant alpha",
        description="move activation outliers into weights (0: off); needs calibration text",
        minimum=0.0,
        maximum=0.9,
        step=0.05,
    )

    @property
    def needs_calibration(self) -> bool:  # type: ignore[override]
        return self.smooth_alpha > 0

    def apply(self, model, context: PassContext):
        linears_to_change(self.name, model)  # refuses before any smoothing
        if self.smooth_alpha > 0:
            calibration = require_calibration(self.name, context.calibration)
            context.progress_fraction(0, 1, "SmoothQuant: measuring activation ranges")
            if smooth(model, calibration, self.smooth_alpha, context.cancel, context.notes) == 0:
                context.notes.append(
                    "int8_dynamic: SmoothQuant skipped, no layer of this model can absorb "
                    "its scales exactly (e.g. a post-norm encoder); plain W8A8"
                )
        names = [name for name, _ in block_linears(model)]
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, Int8DynamicLinear.from_linear(getattr(parent, child)))
        context.progress_fraction(1, 1)
        return model

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import per_channel_int8

        return per_channel_int8(entries, scale_bytes=4)  # float32 scales and bias
