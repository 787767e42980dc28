"""Tiny GPT-2- and Llama-style models, tiny models of other families
transformers ships (Mistral, Qwen2, Qwen3, Phi-3, Gemma 2, Gemma 3) and a
tiny BERT sentiment classifier, with random weights, saved as real Hugging
Face folders (config, safetensors, tokenizer), built in milliseconds and
without any download."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def tiny_tokenizer():
    """A byte-level BPE trained on the standard library's own help texts."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(list(topics.values())[:200], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )


def tiny_config(kind: str):
    from transformers import GPT2Config, LlamaConfig

    vocab = len(tiny_tokenizer())
    eos = tiny_tokenizer().eos_token_id
    if kind == "gpt2":
        return GPT2Config(
            vocab_size=vocab,
            n_positions=256,
            n_embd=64,
            n_layer=2,
            n_head=4,
            bos_token_id=eos,
            eos_token_id=eos,
        )
    if kind == "llama":
        return LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            bos_token_id=eos,
            eos_token_id=eos,
            tie_word_embeddings=True,
        )
    if kind in _BUILT:
        return _family_config(kind, vocab, eos)
    raise ValueError(kind)


# Families whose norms, MLPs or attention differ from Llama's: Mistral
# (sliding-window attention), Qwen2 (biased q/k/v), Qwen3 (q/k norms), Phi-3
# (fused qkv_proj and gate_up_proj), Gemma 2 and 3 ((1 + w) RMSNorms, a
# separate pre-feed-forward norm, norms after attention and MLP, soft-capping
# in Gemma 2, a mix of sliding-window and full attention layers).
FAMILY_CONFIGS = {
    "mistral": ("MistralConfig", {"sliding_window": 8}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "phi3": ("Phi3Config", {}),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8}),
    "gemma3": (
        "Gemma3TextConfig",
        {
            "num_hidden_layers": 4,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 8,
            "layer_types": [
                "sliding_attention",
                "full_attention",
                "sliding_attention",
                "full_attention",
            ],
        },
    ),
}
# The causal LM kinds the passes are tested on.
CAUSAL_KINDS = ("gpt2", "llama", *FAMILY_CONFIGS)

# Further families the ONNX export is tested on (tests/test_onnx_families.py);
# their sizes and multipliers set away from 1 where the family has them, so
# a graph that dropped one would show in the logits. Gemma (1): scaled
# embedding, (1 + w) norms; Granite: embedding, residual, attention and
# logit multipliers; OLMo 2: norms after attention and MLP, q/k norms;
# SmolLM3: layers without RoPE (every 4th); StableLM: partial rotary, q/k/v
# bias; StarCoder2: biased c_fc/c_proj MLP, LayerNorm; Cohere: parallel
# attention and MLP, logit scale; Phi (1/2): partial rotary, parallel
# block; OPT: learned positions, pre-LayerNorm, ReLU; BLOOM: ALiBi instead
# of positions; GPT-J: rotary on the first 8 of each head's 16 dimensions,
# parallel block.
UNSET = object()  # a shared setting this family's config does not have
EXPORT_CONFIGS = {
    "gemma": ("GemmaConfig", {"head_dim": 16}),
    "granite": (
        "GraniteConfig",
        {
            "embedding_multiplier": 2.0,
            "residual_multiplier": 0.5,
            "attention_multiplier": 0.3,
            "logits_scaling": 4.0,
        },
    ),
    "olmo2": ("Olmo2Config", {}),
    "smollm3": ("SmolLM3Config", {"num_hidden_layers": 4}),
    "stablelm": ("StableLmConfig", {"partial_rotary_factor": 0.25, "use_qkv_bias": True}),
    "starcoder2": ("Starcoder2Config", {"sliding_window": None}),
    "cohere": ("CohereConfig", {"logit_scale": 0.5}),
    "phi": ("PhiConfig", {"partial_rotary_factor": 0.5}),
    # OPT has no grouped KV heads: its config must not claim two.
    "opt": ("OPTConfig", {"ffn_dim": 128, "word_embed_proj_dim": 64, "num_key_value_heads": UNSET}),
    "bloom": ("BloomConfig", {"num_key_value_heads": UNSET}),
    "gptj": ("GPTJConfig", {"rotary_dim": 8, "n_positions": 256, "num_key_value_heads": UNSET}),
    # GPT-BigCode: one KV head shared by all (multi-query), learned positions.
    "gpt_bigcode": ("GPTBigCodeConfig", {"num_key_value_heads": UNSET}),
    # CodeGen: rotary on the first 8 dimensions, parallel block, fused qkv_proj.
    "codegen": ("CodeGenConfig", {"rotary_dim": 8, "n_ctx": 256, "num_key_value_heads": UNSET}),
    "olmo": ("OlmoConfig", {}),  # LayerNorm without weights
    "nemotron": ("NemotronConfig", {"head_dim": 16}),  # (1 + w) LayerNorm, gateless relu^2 MLP
    "glm": ("GlmConfig", {"head_dim": 16}),  # interleaved partial rotary, fused gate_up_proj
    "helium": ("HeliumConfig", {"head_dim": 16}),
    "persimmon": ("PersimmonConfig", {"num_key_value_heads": UNSET}),  # q/k LayerNorms
    "xglm": ("XGLMConfig", {"ffn_dim": 128, "num_key_value_heads": UNSET}),  # sinusoidal positions
    "biogpt": ("BioGptConfig", {"num_key_value_heads": UNSET}),  # scaled embedding
    "ernie4_5": ("Ernie4_5Config", {"head_dim": 16}),
    "exaone4": ("Exaone4Config", {"head_dim": 16}),  # norms after attention and MLP
    # GPT-NeoX (Pythia): rotary on a quarter of each head, parallel residual.
    # Its config keeps the shared num_key_value_heads=2, a field GPT-NeoX
    # never reads: the export must follow the model (4 KV heads), not the field.
    "gpt_neox": ("GPTNeoXConfig", {}),
    # Falcon: one KV head (multi-query), fused qkv; the new decoder
    # architecture (Falcon 40B/180B) caches keys repeated to every query head.
    "falcon": ("FalconConfig", {"ffn_hidden_size": 128}),
    "falcon_new_decoder": (
        "FalconConfig",
        {"ffn_hidden_size": 128, "new_decoder_architecture": True, "num_kv_heads": 2},
    ),
}

# Mixtures of experts (experts stored as 3-D tensors): what the passes over
# linear layers refuse (tests/test_moe_refusal.py).
MOE_CONFIGS = {
    "mixtral": ("MixtralConfig", {"num_local_experts": 4, "num_experts_per_tok": 2}),
    # its experts under block_sparse_moe, not mlp: they went unseen
    "granitemoe": ("GraniteMoeConfig", {"num_local_experts": 4, "num_experts_per_tok": 2}),
    "qwen2_moe": (
        "Qwen2MoeConfig",
        {
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 64,
        },
    ),
    "qwen3_moe": (
        "Qwen3MoeConfig",
        {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "head_dim": 16},
    ),
}
# The ONNX export takes the mixtures of experts too (core.onnx.dense_experts).
EXPORT_KINDS = (*CAUSAL_KINDS, *EXPORT_CONFIGS, *MOE_CONFIGS)
# Every kind _family_config builds: the name -> (config class, its fields).
_BUILT = {**FAMILY_CONFIGS, **EXPORT_CONFIGS, **MOE_CONFIGS}


def _family_config(kind: str, vocab: int, eos: int):
    import transformers

    class_name, extra = _BUILT[kind]
    settings = {
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "tie_word_embeddings": True,
    }
    settings = {k: v for k, v in (settings | extra).items() if v is not UNSET}
    return getattr(transformers, class_name)(**settings)


@torch.no_grad()
def _randomise_norms(model) -> None:
    """Norm weights start at exactly 1 (or 0 for Gemma's 1 + w): make them
    random, so a transform that mishandles a norm shows in the logits."""
    for name, param in model.named_parameters():
        if "norm" in name.lower() and param.dim() == 1:
            param.add_(0.2 * torch.randn_like(param))


def save_tiny_model(kind: str, folder: Path, seed: int = 0, **overrides) -> Path:
    """A tiny random model of ``kind``; ``overrides`` set config fields (e.g.
    ``sliding_window=None``: Mistral v0.2 and later, full attention)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(kind)
    for field, value in overrides.items():
        setattr(config, field, value)
    model = AutoModelForCausalLM.from_config(config)
    if kind in _BUILT:
        _randomise_norms(model)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@lru_cache(maxsize=1)
def tiny_wordpiece_tokenizer():
    """A BERT-style WordPiece tokenizer ([CLS] text [SEP]) trained on the
    standard library's help texts."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import BertProcessing
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=512, special_tokens=specials)
    tokenizer.train_from_iterator(list(topics.values())[:200], trainer)
    tokenizer.post_processor = BertProcessing(
        ("[SEP]", tokenizer.token_to_id("[SEP]")), ("[CLS]", tokenizer.token_to_id("[CLS]"))
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def save_tiny_classifier(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BertForSequenceClassification (hidden 64, 4 heads, MLP 128)
    with the sentiment labels, as the demo classifier has them."""
    from transformers import BertConfig, BertForSequenceClassification

    from core.data.sentiment import LABELS

    tokenizer = tiny_wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_nan_copy(source: Path, folder: Path) -> Path:
    """A copy of the model folder ``source`` whose every weight is NaN (what
    overflowing or damaged weights look like to everything downstream)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    weights = load_file(folder / "model.safetensors")
    weights = {name: torch.full_like(t, float("nan")) for name, t in weights.items()}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder
