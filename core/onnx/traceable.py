"""Which recipes ONNX export can trace. Passes that build PyTorch's own
quantised layers (its int8 and int4 matmul kernels) cannot be traced by
torch.export to ONNX; ONNX Runtime quantises its graphs itself (dynamic
and static int8, int8/int4 MatMulNBits). Pure data, asked before any work."""

from __future__ import annotations

TORCH_QUANTIZED_PASSES = frozenset(
    {"int8_weight_only", "int4_weight_only", "int8_dynamic", "int8_head"}
)


ORT_QUANTISING = (
    "ort-int8", "ort-int8-static-*", "ort-w8", "ort-w4", "ort-fused-w8", "ort-fused-w4"
)  # fmt: skip


def onnx_recipe_refusal(recipe, runtime: str = "") -> str | None:
    """One line saying why ``recipe``'s model cannot be exported to ONNX, or
    None; the runtimes it suggests leave out ``runtime``, the one refused."""
    quantized = [p.name for p in recipe.passes if p.name in TORCH_QUANTIZED_PASSES]
    if not quantized:
        return None
    others = [key for key in ORT_QUANTISING if not _names(key, runtime)]
    return (
        f"ONNX export cannot trace {quantized[0]}'s PyTorch int8/int4 layers; leave it out "
        f"and let ONNX Runtime quantise the graph ({', '.join(others)}), or export hf/gguf"
    )


def _names(key: str, runtime: str) -> bool:
    """Whether suggestion ``key`` ("ort-int8-static-*" is a family) is ``runtime``."""
    return runtime.startswith(key[:-1]) if key.endswith("*") else runtime == key
