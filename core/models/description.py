"""A plain description of a loaded model: what it is and what it weighs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from core.model_kinds import CAUSAL_LM, SEQUENCE_CLASSIFICATION

# ".onnx.data": the external weights our ONNX export writes beside model.onnx
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".onnx", ".onnx_data", ".onnx.data")


def task_of(model: torch.nn.Module) -> str:
    """The model kind, from the transformers head class (``...ForSequenceClassification``)."""
    name = type(model).__name__
    return SEQUENCE_CLASSIFICATION if name.endswith("ForSequenceClassification") else CAUSAL_LM


@dataclass(frozen=True)
class ModelDescription:
    source: str
    architecture: str
    model_type: str
    layers: int | None
    hidden_size: int | None
    attention_heads: int | None
    kv_heads: int | None
    intermediate_size: int | None
    vocab_size: int | None
    parameters: int
    bytes_by_dtype: dict[str, int]
    bytes_in_memory: int
    bytes_on_disk: int | None
    tied_embeddings: bool
    device: str
    notes: list[str] = field(default_factory=list)
    task: str = CAUSAL_LM
    labels: list[str] = field(default_factory=list)  # a classifier's classes, by index
    non_finite_weights: int = 0  # weights that are NaN or infinite (core.models.finite_weights)

    def to_dict(self) -> dict:
        return asdict(self)


def bytes_on_disk(folder: Path | None) -> int | None:
    if folder is None or not folder.is_dir():
        return None
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))


def _config_value(config, *names):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def describe(
    model: torch.nn.Module,
    source: str,
    folder: Path | None,
    notes: list[str] | None = None,
    non_finite_weights: int = 0,
) -> ModelDescription:
    from core.models.size import measure_size

    config = model.config
    # Stored tensors as exported: parameters, quantized weights and scales;
    # not non-persistent buffers such as rotary tables, which are rebuilt.
    size = measure_size(model)
    architectures = getattr(config, "architectures", None) or [type(model).__name__]
    return ModelDescription(
        source=source,
        architecture=architectures[0],
        model_type=getattr(config, "model_type", "unknown"),
        layers=_config_value(config, "num_hidden_layers", "n_layer"),
        hidden_size=_config_value(config, "hidden_size", "n_embd"),
        attention_heads=_config_value(config, "num_attention_heads", "n_head"),
        kv_heads=_config_value(config, "num_key_value_heads", "num_attention_heads", "n_head"),
        intermediate_size=_mlp_width(config),
        vocab_size=_config_value(config, "vocab_size"),
        parameters=size.weights,
        bytes_by_dtype=size.by_dtype,
        bytes_in_memory=size.total_bytes,
        bytes_on_disk=bytes_on_disk(folder),
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        device=str(next(model.parameters()).device),
        notes=list(notes or []),
        task=task_of(model),
        labels=_labels(config) if task_of(model) == SEQUENCE_CLASSIFICATION else [],
        non_finite_weights=non_finite_weights,
    )


def _labels(config) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label)]


def unique_tensors_of(tensors) -> list[torch.Tensor]:
    """Each storage once, so tied weights are not counted twice."""
    seen: set[tuple[int, int]] = set()
    out = []
    for tensor in tensors:
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key not in seen:
            seen.add(key)
            out.append(tensor)
    return out


def human_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _mlp_width(config):
    """The MLP's width from the config; GPT-2 style configs leave ``n_inner``
    None for 4x the hidden size (transformers' GPT2MLP), which read as
    "MLP None" (sweep nine)."""
    width = _config_value(
        config, "intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "hidden_dim"
    )
    if width is None and hasattr(config, "n_inner") and getattr(config, "n_embd", None):
        return 4 * config.n_embd
    return width
