"""Gemma 3's sliding-layer rotary tables in the fused graph.

Gemma 3 (4B and up) scales the RoPE of its global layers (linear, factor 8)
and not of its sliding layers; onnxruntime-genai's builder keeps one set of
RoPE settings and scales both tables (top-1 44% against PyTorch on a tiny
model). The builder writes the sliding layers' table as the initializers
``cos_cache_local`` / ``sin_cache_local`` ([positions, rotary dim / 2]);
they are rewritten here as transformers computes them for a "default" RoPE
(inverse frequencies theta^(-2i/d), no attention scaling). Written by hand
because the builder has no setting for it; checked against the builder's own
table where nothing is scaled (tests/test_onnx_fused.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

LOCAL_TABLES = ("cos_cache_local", "sin_cache_local")


def sliding_rope_tables(theta: float, rotary_dim: int, positions: int) -> dict[str, torch.Tensor]:
    """cos and sin of every position times each inverse frequency, unscaled."""
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim
    inverse = 1.0 / (theta**exponents)
    angles = torch.outer(torch.arange(positions).float(), inverse)
    return {"cos_cache_local": torch.cos(angles), "sin_cache_local": torch.sin(angles)}


def needs_unscaled_sliding_rope(config) -> bool:
    rope = getattr(config, "rope_parameters", None) or {}
    if getattr(config, "model_type", None) != "gemma3_text" or "full_attention" not in rope:
        return False
    return rope["full_attention"].get("rope_type", "default") != "default"


def write_unscaled_sliding_rope(path: Path, config) -> None:
    """Rewrite the graph at ``path`` with the sliding layers' unscaled tables."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    sliding = config.rope_parameters["sliding_attention"]
    if sliding.get("rope_type", "default") != "default":
        raise ValueError("the fused graph rewrites only unscaled sliding-layer RoPE")
    found = {init.name: init for init in model.graph.initializer if init.name in LOCAL_TABLES}
    if set(found) != set(LOCAL_TABLES):
        raise ValueError("the fused graph has no sliding-layer rotary tables to rewrite")
    positions, half = found["cos_cache_local"].dims
    tables = sliding_rope_tables(float(sliding["rope_theta"]), 2 * half, positions)
    for name, init in found.items():
        init.CopyFrom(numpy_helper.from_array(tables[name].numpy(), name))
    data = path.with_name(f"{path.name}.data")
    data.unlink(missing_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True, location=data.name)
