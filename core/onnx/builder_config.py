"""The config onnxruntime-genai's builder reads (core.onnx.fused), given the
fields it expects where transformers 5 keeps them elsewhere or not at all.
The builder was written against transformers 4's configs; each adjustment
below was found by a family's fused graph failing the fidelity gate."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def configs_as_the_builder_reads():
    """While the builder runs, the config it reads (its own ``AutoConfig``
    call; the weights are loaded with the model's own config) is adjusted by
    ``as_the_builder_reads``. Adjusting the saved file would not do: loading
    it, transformers 5 moves Gemma 3's legacy field back where it was."""
    from onnxruntime_genai.models import builder

    real = builder.AutoConfig

    class _Adjusted:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return as_the_builder_reads(real.from_pretrained(*args, **kwargs))

    builder.AutoConfig = _Adjusted
    try:
        yield
    finally:
        builder.AutoConfig = real


def as_the_builder_reads(config):
    """``config`` with the fields onnxruntime-genai's builder reads where
    transformers 5 keeps them elsewhere or not at all (changed in place: it
    is the builder's own copy).

    - Phi-3: the builder picks its long-context RoPE model whenever
      ``max_position_embeddings`` differs from ``original_max_position_
      embeddings``, yet transformers reads the latter only for longrope;
      without longrope they are made equal (a Phi-3-mini-4k has them equal
      already; a config that differs failed with KeyError 'multi_cache'). The
      builder reads longrope's type from ``type``; transformers 5 may write
      only ``rope_type``.
    - Mistral and Phi-3 (Phi-3-mini-4k slides over 2,047 positions): the
      builder reads which layers slide from ``layer_types``, which their
      configs do not have; without it every layer was taken for full
      attention (top-1 99.6-99.8% on tiny models with a window of 8).
    - Gemma 3: transformers 5 keeps one RoPE setting per layer type; the
      builder reads the full-attention layers' from ``rope_parameters`` and the
      sliding layers' theta from ``rope_local_base_freq`` (KeyError
      'rope_type' without).
    """
    kind = getattr(config, "model_type", None)
    rope = getattr(config, "rope_parameters", None) or {}
    if kind == "phi3":
        rope_type = rope.get("rope_type") or rope.get("type")
        if rope_type == "longrope":
            rope["type"] = rope_type
        else:
            config.original_max_position_embeddings = config.max_position_embeddings
    windowed = getattr(config, "sliding_window", None)
    if kind in ("mistral", "phi3") and windowed and not getattr(config, "layer_types", None):
        config.layer_types = ["sliding_attention"] * config.num_hidden_layers
    if kind == "gemma3_text" and "full_attention" in rope:
        config.rope_local_base_freq = rope["sliding_attention"]["rope_theta"]
        config.rope_parameters = dict(rope["full_attention"])
    return config
