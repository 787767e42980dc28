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
    """(kv_heads, head_dim) of one layer's cache as the config gives them: the
    runtime's fallback for a graph whose cache dimensions are not fixed (ours
    are, and are read from the graph; families derive KV heads their own way)."""
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return kv_heads, head_dim


def declared_cache_shape(config) -> tuple[int | None, int | None]:
    """(kv_heads, head_dim) where ``config``'s class declares the field (a
    field transformers' config class names, maps or computes), else None: a
    config may carry a field its family never reads (``num_key_value_heads``
    in a GPT-NeoX config), and that says nothing about the model."""
    return tuple(
        getattr(config, field, None) if _declares(type(config), field) else None
        for field in ("num_key_value_heads", "head_dim")
    )


def _declares(cls, field: str) -> bool:
    return (
        any(field in getattr(k, "__annotations__", {}) for k in cls.__mro__)
        or field in getattr(cls, "attribute_map", {})
        or isinstance(getattr(cls, field, None), property)
    )


def layer_count(config) -> int:
    return getattr(config, "num_hidden_layers", None) or config.n_layer
