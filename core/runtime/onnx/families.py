"""Which decoder families our ONNX graph (``core.onnx.graph``) is made for,
and, for any other model, the one line that says why it is refused before
any work starts.

Each family here is exported and checked on a tiny random model by
``tests/test_onnx_families.py``: the fidelity gate, a prefill then
token-by-token decode through the graph's KV cache against PyTorch, and
greedy tokens. Sliding-window layers (Mistral, Gemma 2/3) keep their whole
cache in the graph: transformers' sliding cache crops itself to the window
and then counts positions from what it holds, so a graph fed its own cropped
cache back decoded past the window with wrong positions (Mistral) or indexed
outside the cache (Gemma); with the whole cache the sliding mask comes from
the config and decode matches PyTorch to float rounding.

Pure data and config reading, no torch: the run job asks it before building
a configuration.
"""

from __future__ import annotations

# model_type -> the family name people read.
EXPORTABLE = {
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "phi3": "Phi-3",
    "gemma2": "Gemma 2",
    "gemma3_text": "Gemma 3 (text)",
    "gpt2": "GPT-2",
    "gemma": "Gemma",
    "granite": "Granite",
    "olmo2": "OLMo 2",
    "smollm3": "SmolLM3",
    "stablelm": "StableLM",
    "starcoder2": "StarCoder2",
    "cohere": "Cohere",
    "phi": "Phi-1/2",
    "opt": "OPT",
    "bloom": "BLOOM",
    "gptj": "GPT-J",
    "gpt_bigcode": "GPT-BigCode (StarCoder 1)",
    "codegen": "CodeGen",
    "olmo": "OLMo",
    "nemotron": "Nemotron",
    "glm": "GLM",
    "helium": "Helium",
    "persimmon": "Persimmon",
    "xglm": "XGLM",
    "biogpt": "BioGPT",
    "ernie4_5": "ERNIE 4.5",
    "exaone4": "EXAONE 4",
    "falcon": "Falcon",
    "gpt_neox": "GPT-NeoX (Pythia)",
    # Mixtures of experts: every expert runs on every token in the graph
    # (core.onnx.dense_experts).
    "mixtral": "Mixtral",
    "qwen2_moe": "Qwen2-MoE",
    "qwen3_moe": "Qwen3-MoE",
    "granitemoe": "GraniteMoE",
}

# Families refused for a known reason (rather than "not tested"): the whole line.
KNOWN_REFUSALS = {
    "gemma3": "ONNX export takes Gemma 3's text-only model ('gemma3_text'), not a 'gemma3' "
    "checkpoint with its vision tower.",
    "mpt": "ONNX export cannot take MPT: torch.export fails on its ALiBi attention mask with "
    "a dynamic sequence length (torch 2.13, transformers 5), so no graph can be checked.",
    "bert": "ONNX export takes decoder LMs with a KV cache; 'bert' is an encoder (a classifier "
    "here), which runs on PyTorch eager.",
}


def export_refusal(config) -> str | None:
    """One line saying why ``config``'s model cannot be exported to our ONNX
    graph, or None when it can."""
    model_type = getattr(config, "model_type", "unknown")
    if model_type in KNOWN_REFUSALS:
        return KNOWN_REFUSALS[model_type]
    if model_type not in EXPORTABLE:
        return (
            f"ONNX export does not take {model_type!r}; it takes the model types "
            f"{', '.join(EXPORTABLE)}."
        )
    if model_type == "falcon" and getattr(config, "alibi", False):
        return (
            "ONNX export cannot take Falcon with ALiBi (Falcon-RW): transformers computes its "
            "ALiBi bias in bfloat16, which ONNX Runtime's CPU kernels do not multiply."
        )
    types = rope_types(config)
    if any("dynamic" in kind for kind in types):
        return (
            "ONNX export cannot take dynamic RoPE scaling: it recomputes its frequencies "
            "from the sequence length in Python, which torch.export cannot trace."
        )
    return None


def exact_positions(config) -> int | None:
    """Positions up to which our graphs match the PyTorch model, where fewer
    than its context, else None. Long-context RoPE (longrope: Phi-3-128k,
    Phi-3.5, Phi-4-mini) switches to its long factors once a sequence passes
    its original context; neither the traced graph (the branch is fixed when
    traced) nor the builder's fused graph (its own switch) then matches
    PyTorch's cache (a tiny Phi-3's logits differed by 4e-3 to 8e-3 past it),
    so the graphs run up to that original context and refuse beyond it."""
    if "longrope" not in rope_types(config):
        return None
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    original = rope.get("original_max_position_embeddings") or getattr(
        config, "original_max_position_embeddings", None
    )
    return int(original) if original else None


def rope_types(config) -> list[str]:
    """The RoPE types of ``config`` (one per layer type where they differ, as in Gemma 3)."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    if not isinstance(rope, dict):
        return []
    sets = [rope] if "rope_type" in rope or "type" in rope else list(rope.values())
    return [str(s.get("rope_type") or s.get("type")) for s in sets if isinstance(s, dict)]
