"""int8 output head and token embedding: one symmetric int8 scale per
vocabulary row. On small models with large vocabularies these two matrices
are most of what is left after quantizing the blocks (SmolLM2-135M: 113 MB
of fp32 embedding, read whole by every decode step's head), and llama.cpp
likewise keeps them in 6 or 8 bits rather than 4.

Version 2 adds ``bits=4``: group-wise asymmetric int4 (``group_size``
columns share a scale and zero), the head an Int4WeightOnlyLinear run by
torch's int4 kernel, the embedding an Int4Embedding that dequantizes only
the rows it gathers. A version-1 recipe reads unchanged (int8). Measured on
the default model beside int4 g128 GPTQ blocks (benchmarks/head_quality.py,
report split): int4 g32 saves 10.8 MB (0.147x fp32 against 0.167x) for
+40.4% perplexity against int8's +31.2%, so 8 bits stay the default.

Tied weights (one matrix for both, as most small models have): the head
becomes an Int8WeightOnlyLinear (or Int4WeightOnlyLinear) and the embedding
an Int8Embedding (Int4Embedding) holding the very same tensors, so the model
keeps one copy and its size counts one; the int4 embedding reads its rows
out of the kernel's packing (``core.models.int4_rows``). Quantizing the head
alone of a tied model leaves the float embedding beside a quantized copy for
the head: two copies, both counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from core.message_text import shown
from core.models.config_check import text_config
from core.models.quantized_embedding import Int4Embedding, Int8Embedding
from core.models.quantized_linear import Int4WeightOnlyLinear, Int8WeightOnlyLinear
from core.passes.base import OptionError, PassConfig, PassContext, option, register

# Parameter names of a token embedding and of an LM head, for the size
# estimate (which sees tensor names, not modules).
EMBEDDING_NAMES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight")
HEAD_NAMES = ("lm_head.weight",)


@register
@dataclass(frozen=True)
class Int8HeadConfig(PassConfig):
    name = "int8_head"  # kept from version 1 (int8 only) so saved recipes still load
    version = 2
    read_versions = (1,)
    kind = "quantize_head"  # beside a block quantization: they touch disjoint modules
    title = "quantized head and embeddings"

    targets: str = option(
        "head+embeddings",
        label="quantize",
        description="the output head, or the head and the token embedding (tied: one copy)",
        choices=("head+embeddings", "head"),
    )
    bits: int = option(
        8,
        label="bits",
        description="8: int8, one scale per vocabulary row; 4: int4, a scale and zero per group",
        choices=(8, 4),
    )
    # 32 chosen on dev (benchmarks/head_quality.py, GPTQ g128 blocks; dev ppl 46.23 / 47.74 /
    # 48.71 at g32 / g64 / g128). 576-wide rows pad to 640 at g128: g64 is even smaller.
    group_size: int = option(
        32,
        label="group size",
        description="int4 only: input columns sharing one scale and zero (smaller: more accurate)",
        choices=(32, 64, 128),
    )

    @classmethod
    def upgrade(cls, version: int, options: dict) -> dict:
        written = set(options) - {"targets"}
        if written:
            raise OptionError(
                f"int8_head version {version} has only the option targets, "
                f"got {shown(sorted(written)[0])}"
            )
        return options

    def module_refusal(self, model) -> str | None:
        head = model.get_output_embeddings()
        if type(head) is not nn.Linear:
            what = f"its output head is a {type(head).__name__}" if head is not None else "none"
            return (
                f"int8_head: this model has no linear output head over the vocabulary ({what};"
                " a classifier's labels head is not one)"
            )
        embedding = model.get_input_embeddings()
        if self.targets == "head+embeddings" and type(embedding) is not nn.Embedding:
            return (
                f"int8_head: the token embedding is a {type(embedding).__name__}, not a plain "
                "lookup; quantize the head alone (targets=head)"
            )
        return None

    def apply(self, model, context: PassContext):
        if refusal := self.module_refusal(model):
            raise ValueError(refusal)
        head = model.get_output_embeddings()
        embedding = model.get_input_embeddings()
        tied = embedding is not None and _same_tensor(head.weight, embedding.weight)
        with_embeddings = self.targets == "head+embeddings"
        label = self._label()
        device = head.weight.device
        if self.bits == 4:  # packed on the CPU: the embedding reads rows of the CPU layout
            new_head = _int4_on_cpu(head.weight, head.bias, self.group_size)
        else:
            new_head = Int8WeightOnlyLinear.from_linear(head)
        context.progress_fraction(1, 2, f"{label} head")
        if with_embeddings:
            if tied:  # same matrix, same quantization: share the tensors
                new_embedding = self._shared_embedding(new_head, embedding)
                context.notes.append(
                    f"int8_head: head and embedding were tied; one {label} copy serves both"
                )
            elif self.bits == 4:
                new_embedding = Int4Embedding.from_embedding(embedding, self.group_size)
            else:
                new_embedding = Int8Embedding.from_embedding(embedding)
            _replace(model, embedding, new_embedding.to(device))
        elif tied:
            context.notes.append(
                f"int8_head: head and embedding were tied; the head is now its own {label} copy "
                "beside the float embedding (two copies, both counted in the size)"
            )
        _replace(model, head, new_head.to(device))
        if self.bits == 4 and tied and with_embeddings and device.type != "cpu":
            # The head is repacked for that device's kernel, the embedding keeps
            # the CPU layout it reads rows from: two copies there (measured so).
            context.notes.append(
                f"int8_head: on {device.type} the int4 head and embedding are two copies"
            )
        context.progress_fraction(2, 2)
        return model

    def _label(self) -> str:
        return f"int4 g{self.group_size}" if self.bits == 4 else "int8"

    @staticmethod
    def _shared_embedding(new_head, embedding):
        if isinstance(new_head, Int4WeightOnlyLinear):
            return Int4Embedding.sharing(new_head, embedding)
        return Int8Embedding(
            new_head.weight_int8, new_head.scales, embedding.padding_idx, embedding.weight.dtype
        )

    def estimate(self, entries, model_config):
        from dataclasses import replace

        from core.passes.size_estimate import Entry, quantized

        def int8_bytes(e: Entry) -> int:
            rows, columns = _vocab_size(model_config), _hidden_size(model_config)
            elements = rows * columns  # from the config: a cast's entry keeps its old dtype name
            if self.bits == 4:  # Int4WeightOnlyLinear's packing: rows in 16s, columns in groups
                g = self.group_size
                padded = -(-columns // g) * g
                return -(-rows // 16) * 16 * (padded // 2 + padded // g * 4)
            return elements + 2 * rows  # one byte a weight, a bf16 scale a row

        # Not a float dtype name, so a cast after this pass leaves these bytes alone.
        dtype = "uint8" if self.bits == 4 else "int8"
        heads = [e for e in entries if e.name.endswith(HEAD_NAMES)]
        embeddings = [e for e in entries if e.name.endswith(EMBEDDING_NAMES)]
        out = []
        for e in entries:
            if e in heads or (e in embeddings and self.targets == "head+embeddings"):
                out.append(replace(quantized(e, int8_bytes(e)), dtype=dtype))
            else:
                out.append(e)
        if not heads and embeddings:  # tied: the head reads the embedding's matrix
            tied = embeddings[0]
            if self.targets == "head":  # its own quantized copy beside the float embedding
                name = tied.name.rsplit(".", 2)[0] + ".lm_head.weight"
                out.append(quantized(Entry(name, "head", None, 0, dtype), int8_bytes(tied)))
        return out


def _same_tensor(a, b) -> bool:
    """One matrix for both: the same Parameter, or (after a cast, which makes
    new Parameters) the same storage, as the size measurement counts it."""
    if a is b:
        return True
    return (
        a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        and a.storage_offset() == b.storage_offset()
        and a.shape == b.shape
    )


def _int4_on_cpu(weight, bias, group_size: int) -> Int4WeightOnlyLinear:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight.detach().cpu(), requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias.detach().cpu(), requires_grad=False)
    return Int4WeightOnlyLinear.from_linear(linear, group_size)


def _vocab_size(config) -> int:
    text = text_config(config)
    return text.vocab_size


def _hidden_size(config) -> int:
    text = text_config(config)
    return text.hidden_size


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    from core.models.linear_layers import replace_module

    name = next(n for n, m in model.named_modules() if m is old)
    replace_module(model, name, new)
