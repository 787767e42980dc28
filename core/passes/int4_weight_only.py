"""int4 weight-only, group-wise, packed two weights per byte, run by torch's
int4 packed matmul (bf16 activations). Round-to-nearest, or with calibration
text: GPTQ (``core.passes.gptq``, in column order or act-order) or AWQ
(``core.passes.awq``: scales folded into the ops before, clipping searched).
Every method stores the same module, Int4WeightOnlyLinear.

Version 2 added the methods gptq_act_order and awq; a version-1 recipe (rtn
or gptq) reads unchanged and means the same."""

from __future__ import annotations

from dataclasses import dataclass

from core.message_text import counted, shown
from core.models.linear_layers import (
    replace_module,
)
from core.models.quantized_linear import Int4WeightOnlyLinear
from core.passes.awq import clipped_quantize, clips, fold_awq_scales
from core.passes.base import OptionError, PassContext, ScopedConfig, option, register
from core.passes.calibration import collect_input_hessians, require_calibration
from core.passes.gptq import gptq_quantize

METHODS = ("rtn", "gptq", "gptq_act_order", "awq")


@register
@dataclass(frozen=True)
class Int4WeightOnlyConfig(ScopedConfig):
    name = "int4_weight_only"
    version = 2
    read_versions = (1,)
    kind = "quantize"
    title = "int4 weight-only (group-wise)"
    group_size: int = option(
        128,
        label="group size",
        description="input columns sharing one scale and minimum (smaller: more accurate, larger)",
        choices=(32, 64, 128),
    )
    method: str = option(
        "rtn",
        label="method",
        description=(
            "rtn: round to nearest; gptq: correct rounding errors using calibration text "
            "(act_order: inputs with most energy first); awq: scale salient input channels "
            "and clip each group, searched on calibration text"
        ),
        choices=METHODS,
    )

    @classmethod
    def upgrade(cls, version: int, options: dict) -> dict:
        if options.get("method", "rtn") not in ("rtn", "gptq"):
            raise OptionError(
                f"int4_weight_only version {version} has method rtn or gptq, "
                f"got {shown(options['method'])}"
            )
        return options

    @property
    def needs_calibration(self) -> bool:  # type: ignore[override]
        return self.method != "rtn"

    def apply(self, model, context: PassContext):
        layers = self.scoped_linears(model)
        narrow = sorted({m.in_features for _, m in layers if m.in_features < self.group_size})
        if narrow:  # padded to a whole group: as many bytes as a wider input would take
            context.notes.append(
                f"int4_weight_only: groups of {self.group_size} are wider than the inputs of "
                f"{counted(sum(m.in_features < self.group_size for _, m in layers), 'layer')} "
                f"({', '.join(map(str, narrow))}); their rows are padded to {self.group_size}, so "
                "they shrink less than int4 would (a smaller group_size fits them)"
            )
        hessians = {}
        if self.method == "awq":  # folds its scales into the model first
            calibration = require_calibration(self.name, context.calibration)
            hessians = fold_awq_scales(model, layers, calibration, self.group_size, context)
        elif self.method != "rtn":
            calibration = require_calibration(self.name, context.calibration)
            context.progress_fraction(0, 1, "GPTQ: collecting calibration statistics")
            hessians = collect_input_hessians(model, layers, calibration, context.cancel)
        for index, (name, linear) in enumerate(layers):
            context.cancel.raise_if_cancelled()
            if self.method != "rtn":
                q, scale, minimum = self._quantize(name, linear.weight, hessians.pop(name))
                new = Int4WeightOnlyLinear.from_quantized(
                    q, scale, minimum, linear.bias, linear.in_features, self.group_size
                ).to(linear.weight.device)  # calibrated on the CPU: repacked for the model's
            else:
                new = Int4WeightOnlyLinear.from_linear(linear, self.group_size)
            replace_module(model, name, new)
            context.progress_fraction(index + 1, len(layers), f"int4 {self.method}: {name}")
        return model

    def conflict(self) -> str | None:
        if self.method == "awq" and self.parts:
            return (
                "int4_weight_only awq scales whole groups of parts (q, k, v; gate, up): "
                "limit it by layers, not parts"
            )
        return super().conflict()

    def _quantize(self, name: str, weight, hessian):
        if self.method == "awq":
            return clipped_quantize(weight, hessian, self.group_size, clip=clips(name))
        act_order = self.method == "gptq_act_order"
        return gptq_quantize(weight, hessian, self.group_size, act_order=act_order)

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import quantized

        g = self.group_size
        out = []
        for e in entries:
            if not self.in_scope(e):
                out.append(e)
                continue
            padded = -(-e.in_features // g) * g
            rows = -(-e.out_features // 16) * 16  # the kernel packs rows in 16s
            # Two weights per byte, a bf16 scale and zero per group, bf16 bias.
            nbytes = rows * (padded // 2 + padded // g * 4) + e.out_features * 2 * e.has_bias
            out.append(quantized(e, nbytes))
        return out
