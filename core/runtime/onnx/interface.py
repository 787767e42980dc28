"""The interface of our exported graphs (input and output names, cache
shapes): what core.onnx builds and core.runtime.onnx.ort_model runs. The
graph itself is described in core.onnx.graph."""

from __future__ import annotations

from core.runtime.onnx.families import EXPORTABLE

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
LOGITS_POSITIONS = "logits_positions"
LOGITS = "logits"
SUPPORTED_MODEL_TYPES = tuple(EXPORTABLE)  # model types; core.runtime.onnx.families


def past_names(layers: int) -> list[str]:
    return [f"past_key_values.{i}.{part}" for i in range(layers) for part in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present.{i}.{part}" for i in range(layers) for part in ("key", "value")]


def cache_shape(config) -> tuple[int, int]:
    """(kv_heads, head_dim) of one layer's cache."""
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return kv_heads, head_dim


def layer_count(config) -> int:
    return getattr(config, "num_hidden_layers", None) or config.n_layer
