"""int8 output head and token embedding: one symmetric int8 scale per
vocabulary row. On small models with large vocabularies these two matrices
are most of what is left after quantizing the blocks (SmolLM2-135M: 113 MB
of fp32 embedding, read whole by every decode step's head), and llama.cpp
likewise keeps them in 6 or 8 bits rather than 4.

Tied weights (one matrix for both, as most small models have): the head
becomes an Int8WeightOnlyLinear and the embedding an Int8Embedding holding
the very same int8 tensor and scales, so the model keeps one copy and its
size counts one. Quantizing the head alone of a tied model leaves the float
embedding beside an int8 copy for the head: two copies, both counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from core.models.quantized_embedding import Int8Embedding
from core.models.quantized_linear import Int8WeightOnlyLinear
from core.passes.base import PassConfig, PassContext, option, register

# Parameter names of a token embedding and of an LM head, for the size
# estimate (which sees tensor names, not modules).
EMBEDDING_NAMES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight")
HEAD_NAMES = ("lm_head.weight",)


@register
@dataclass(frozen=True)
class Int8HeadConfig(PassConfig):
    name = "int8_head"
    kind = "quantize_head"  # beside a block quantization: they touch disjoint modules
    title = "int8 head and embeddings"

    targets: str = option(
        "head+embeddings",
        label="quantize",
        description="the output head, or the head and the token embedding (tied: one int8 copy)",
        choices=("head+embeddings", "head"),
    )

    def apply(self, model, context: PassContext):
        head = model.get_output_embeddings()
        if type(head) is not nn.Linear:
            raise ValueError(
                f"int8_head: this model has no linear output head over the vocabulary "
                f"({type(head).__name__ if head is not None else 'none'})"
            )
        embedding = model.get_input_embeddings()
        tied = embedding is not None and head.weight is embedding.weight
        with_embeddings = self.targets == "head+embeddings"
        if with_embeddings and type(embedding) is not nn.Embedding:
            raise ValueError(
                f"int8_head: the token embedding is a {type(embedding).__name__}, not a plain "
                "lookup; quantize the head alone (targets=head)"
            )
        new_head = Int8WeightOnlyLinear.from_linear(head)
        _replace(model, head, new_head)
        context.progress_fraction(1, 2, "int8 head")
        if with_embeddings:
            if tied:  # same matrix, same quantization: share the tensors
                new_embedding = Int8Embedding(
                    new_head.weight_int8,
                    new_head.scales,
                    embedding.padding_idx,
                    embedding.weight.dtype,
                )
                context.notes.append(
                    "int8_head: head and embedding were tied; one int8 copy serves both"
                )
            else:
                new_embedding = Int8Embedding.from_embedding(embedding)
            _replace(model, embedding, new_embedding)
        elif tied:
            context.notes.append(
                "int8_head: head and embedding were tied; the head is now an int8 copy beside "
                "the float embedding (two copies, both counted in the size)"
            )
        context.progress_fraction(2, 2)
        return model

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import Entry, quantized

        def int8_bytes(e: Entry) -> int:
            rows = _vocab_size(model_config)
            elements = e.nbytes // _itemsize(e.dtype)
            return elements + 2 * rows  # one byte a weight, a bf16 scale a row

        heads = [e for e in entries if e.name.endswith(HEAD_NAMES)]
        embeddings = [e for e in entries if e.name.endswith(EMBEDDING_NAMES)]
        out = []
        for e in entries:
            if e in heads or (e in embeddings and self.targets == "head+embeddings"):
                out.append(quantized(e, int8_bytes(e)))
            else:
                out.append(e)
        if not heads and embeddings:  # tied: the head reads the embedding's matrix
            tied = embeddings[0]
            if self.targets == "head":  # its own int8 copy beside the float embedding
                name = tied.name.rsplit(".", 2)[0] + ".lm_head.weight"
                out.append(quantized(Entry(name, "head", None, 0, "int8"), int8_bytes(tied)))
        return out


def _vocab_size(config) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return text.vocab_size


def _itemsize(dtype: str) -> int:
    return {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}.get(dtype, 4)


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    from core.models.linear_layers import replace_module

    name = next(n for n, m in model.named_modules() if m is old)
    replace_module(model, name, new)
