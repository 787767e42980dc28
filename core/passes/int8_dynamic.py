"""W8A8: int8 weights (per output channel) and int8 activations quantised
dynamically per call, run by torch's fbgemm quantized linear kernel."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from core.passes.base import PassConfig, PassContext, option, register
from core.passes.calibration import require_calibration
from core.passes.linear_layers import (
    block_linears,
    convert_conv1d_to_linear,
    unsupported_layers_error,
)
from core.passes.smooth_quant import smooth


@register
@dataclass(frozen=True)
class Int8DynamicConfig(PassConfig):
    name = "int8_dynamic"
    kind = "quantize"
    title = "W8A8 (int8 weights, dynamic int8 activations)"
    smooth_alpha: float = option(
        0.7,  # best of 0.5 / 0.7 / 0.8 on SmolLM2 (perplexity 15.5 / 12.7 / 12.7)
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
        if next(model.parameters()).device.type != "cpu":
            raise ValueError("int8_dynamic runs on the CPU kernels (fbgemm); load on the CPU.")
        convert_conv1d_to_linear(model)
        if self.smooth_alpha > 0:
            calibration = require_calibration(self.name, context.calibration)
            context.progress_fraction(0, 1, "SmoothQuant: measuring activation ranges")
            if smooth(model, calibration, self.smooth_alpha, context.cancel) == 0:
                context.notes.append(
                    "int8_dynamic: SmoothQuant skipped, no layer of this model can absorb "
                    "its scales exactly (post-norm encoder); plain W8A8"
                )
        names = [name for name, _ in block_linears(model)]
        if not names:
            raise unsupported_layers_error(self.name, model)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # torch.ao's eager quantization is marked deprecated in favour of
        # torchao, whose CPU W8A8 path is only fast under torch.compile; the
        # fbgemm kernel is still the fastest eager option here (measured).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.backends.quantized.engine = "fbgemm"
            quantize_dynamic(
                model,
                {name: per_channel_dynamic_qconfig for name in names},
                dtype=torch.qint8,
                inplace=True,
            )
        context.progress_fraction(1, 1)
        return model

    def estimate(self, entries, model_config):
        from core.size_estimate import per_channel_int8

        return per_channel_int8(entries, scale_bytes=4)  # float32 scales and bias
