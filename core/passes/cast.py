"""fp16 / bf16: cast every floating-point weight, stored and run in that dtype."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.passes.base import PassConfig, PassContext, option, register

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls are only fast on CPUs with AVX512-BF16 or AMX."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@register
@dataclass(frozen=True)
class CastConfig(PassConfig):
    name = "cast"
    kind = "quantize"
    title = "Half precision (fp16 / bf16)"
    dtype: str = option(
        "bfloat16",
        label="dtype",
        description="16-bit float type the weights are stored and run in",
        choices=("bfloat16", "float16"),
    )

    def apply(self, model, context: PassContext):
        device = next(model.parameters()).device
        if device.type == "cpu" and not cpu_has_fast_bf16():
            context.notes.append(
                f"{self.dtype} on this CPU has no native 16-bit matmul: prefill (compute-bound) "
                "is several times slower than float32; decode (memory-bound) can still gain."
            )
        # Rebuilt tables (rotary inv_freq: non-persistent buffers) stay in
        # their dtype, as transformers keeps them when it loads a 16-bit
        # model, so the exported folder loads back to exactly this model.
        rebuilt = [
            (module, name, buffer)
            for module in model.modules()
            for name, buffer in module._buffers.items()
            if buffer is not None and name in module._non_persistent_buffers_set
        ]
        model = model.to(DTYPES[self.dtype])
        for module, name, buffer in rebuilt:
            module._buffers[name] = buffer.to(module._buffers[name].device)
        return model

    def estimate(self, entries, model_config):
        from dataclasses import replace

        out = []
        for e in entries:
            if e.is_linear:
                out.append(replace(e, float_bytes=2, nbytes=e.nbytes // e.float_bytes * 2))
            elif e.dtype in ("float32", "float16", "bfloat16"):
                out.append(replace(e, nbytes=e.nbytes * 2 // (4 if e.dtype == "float32" else 2)))
            else:
                out.append(e)
        return out
