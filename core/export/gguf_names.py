"""llama.cpp's view of a model: which families GGUF export writes, the GGUF
tensor names (the ``gguf`` package's own ``TensorNameMap``), the row order of
q/k that llama.cpp's rotary embedding wants, and the architecture metadata,
read from the configuration's actual tensor shapes (a pruned model has
fewer heads, neurons or layers than its original config said)."""

from __future__ import annotations

from dataclasses import dataclass

import gguf
import torch

from core.errors import UnsupportedModelError


@dataclass(frozen=True)
class Family:
    arch: gguf.MODEL_ARCH
    # convert_hf_to_gguf permutes q/k rows for LLAMA: transformers keeps each
    # head's rotary pairs as two halves, llama.cpp's "normal" rope interleaves
    # them. Qwen2 uses NEOX rope (halves), so their rows stay as they are.
    permute_qk: bool


# model_type -> family. Mistral is written as "llama", as convert_hf_to_gguf does.
# Not Qwen3 yet: transformers' GGUF reader ignores its head size (key_length),
# so no reader here could check a file of it.
FAMILIES = {
    "llama": Family(gguf.MODEL_ARCH.LLAMA, True),
    "mistral": Family(gguf.MODEL_ARCH.LLAMA, True),
    "qwen2": Family(gguf.MODEL_ARCH.QWEN2, False),
}


def family_of(config) -> Family:
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"GGUF export supports {', '.join(sorted(FAMILIES))} models, not {model_type!r}"
        )
    rope = rope_parameters(config)
    if rope.get("rope_type", "default") != "default":
        raise UnsupportedModelError(
            f"GGUF export writes plain rotary embeddings; this model's rope type is "
            f"{rope['rope_type']!r}"
        )
    return FAMILIES[model_type]


def arch_name(family: Family) -> str:
    return gguf.MODEL_ARCH_NAMES[family.arch]


def rope_parameters(config) -> dict:
    """transformers 5 keeps rope settings in ``rope_parameters``; older configs
    in ``rope_theta`` / ``rope_scaling``."""
    found = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    params = dict(found or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return params


def gguf_name(name_map: gguf.TensorNameMap, hf_name: str) -> str:
    found = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if found is None:
        raise UnsupportedModelError(f"GGUF export: no llama.cpp name for tensor {hf_name}")
    return found


def rope_row_order(rows: int, heads: int) -> torch.Tensor:
    """convert_hf_to_gguf's ``LlamaModel.permute`` as a row order
    (new[i] = old[order[i]]), so int8/int4 values and their per-row scales
    move with their rows."""
    index = torch.arange(rows)
    return index.reshape(heads, 2, rows // heads // 2).swapaxes(1, 2).reshape(rows)


@dataclass(frozen=True)
class Shapes:
    """What llama.cpp's loader must be told, read from the tensors."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int


def _uniform(values: list[int], what: str) -> int:
    if len(set(values)) != 1:
        raise UnsupportedModelError(
            f"GGUF export needs the same {what} in every layer (found {sorted(set(values))}); "
            "llama.cpp can read per-layer widths but no reader here can check them"
        )
    return values[0]


def read_shapes(model, weights: dict) -> Shapes:
    """Head counts and widths from the configuration's own tensors."""
    layers = model.model.layers
    head_dim = int(getattr(layers[0].self_attn, "head_dim", 0)) or (
        model.config.hidden_size // model.config.num_attention_heads
    )

    count = len(layers)

    def rows(part: str) -> list[int]:
        return [weights[f"model.layers.{i}.{part}.weight"].dense.shape[0] for i in range(count)]

    q, k, ffn = rows("self_attn.q_proj"), rows("self_attn.k_proj"), rows("mlp.up_proj")
    embed = weights["model.embed_tokens.weight"].dense
    return Shapes(
        vocab=embed.shape[0],
        hidden=embed.shape[1],
        layers=len(layers),
        heads=_uniform(q, "query width") // head_dim,
        kv_heads=_uniform(k, "key width") // head_dim,
        head_dim=head_dim,
        ffn=_uniform(ffn, "MLP width"),
    )


def write_architecture(writer: gguf.GGUFWriter, family: Family, config, shapes: Shapes) -> None:
    """The keys convert_hf_to_gguf writes for these families."""
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(shapes.hidden)
    writer.add_block_count(shapes.layers)
    writer.add_feed_forward_length(shapes.ffn)
    writer.add_head_count(shapes.heads)
    writer.add_head_count_kv(shapes.kv_heads)
    writer.add_rope_freq_base(float(rope_parameters(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_key_length(shapes.head_dim)
    writer.add_value_length(shapes.head_dim)
    if family.arch == gguf.MODEL_ARCH.LLAMA:
        writer.add_vocab_size(shapes.vocab)
        writer.add_rope_dimension_count(shapes.head_dim)
