"""The tokenizer in a GGUF: vocabulary, merges, special token ids, the chat
template and the name of llama.cpp's pre-tokenizer.

A model that came from a GGUF (the embedded default model) gets that file's
tokenizer keys copied as they are: they were written by llama.cpp's own
converter from the original tokenizer. Any other model's byte-level BPE is
written the way convert_hf_to_gguf does (``get_vocab_base`` and the ``gguf``
package's ``SpecialVocab``). The pre-tokenizer name cannot be read from a
tokenizer.json, so it is found by behaviour: the tokenizer's own pre-tokenizer
splits a probe text, and the first of llama.cpp's known splitting rules that
splits it the same way is named.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gguf

from core.errors import ModelNotFoundError, UnsupportedModelError
from core.export.gguf_read import read_gguf

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
# llama.cpp's regex lists per pre-tokenizer name (llama-vocab.cpp), applied in order.
PRE_SPLITS = {
    "gpt-2": (_GPT2,),
    "smollm": (r"\p{N}", _GPT2),
    "qwen2": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    "llama-bpe": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
}
PROBE = (
    "\n \n\n \t\t x  y   z\n   Hello World! I've been 'told he's there, 'RE you sure? "
    "3 33 333 3333 3.14 ...!!?? ------====== naïve café 🚀 (emoji) 我想在apple工作1314 "
    "We'Ve a'lL done it.  \n"
)
NO_MATCH = "gpt-2"  # written when no known rule matches (and said so)


def _split(text: str, expressions: tuple[str, ...]) -> list[tuple[int, int]]:
    """llama.cpp's unicode_regex_split: each expression cuts every piece into
    its matches and the text between them."""
    import regex

    pieces = [(0, len(text))]
    for expression in expressions:
        pattern = regex.compile(expression)
        cut = []
        for start, end in pieces:
            at = start
            for match in pattern.finditer(text, start, end):
                if match.start() > at:
                    cut.append((at, match.start()))
                cut.append(match.span())
                at = match.end()
            if at < end:
                cut.append((at, end))
        pieces = cut
    return pieces


def detect_pre(tokenizer) -> str | None:
    """The llama.cpp pre-tokenizer that splits text as this tokenizer does."""
    backend = tokenizer.backend_tokenizer
    pre, normalizer = backend.pre_tokenizer, backend.normalizer
    if pre is None or (normalizer is not None and normalizer.normalize_str(PROBE) != PROBE):
        return None
    want = [span for _, span in pre.pre_tokenize_str(PROBE)]
    return next((name for name, exps in PRE_SPLITS.items() if _split(PROBE, exps) == want), None)


def _looks_special(token: str) -> bool:
    """convert_hf_to_gguf's does_token_look_special."""
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<｜") and token.endswith("｜>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def vocab_tokens(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """convert_hf_to_gguf's get_vocab_base: tokens in id order and their types."""
    reverse = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            if not decoder[i].normalized:  # llama.cpp expects added tokens pre-normalised
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            if decoder[i].special or _looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                token = token.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, types


def _check_byte_level_bpe(tokenizer) -> None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model = json.loads(backend.to_str())["model"] if backend is not None else {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        kind = model.get("type", type(tokenizer).__name__)
        raise UnsupportedModelError(
            "GGUF export writes byte-level BPE tokenizers (GPT-2 style, as Llama 3, SmolLM "
            f"and Qwen2 use); this model's tokenizer is {kind}"
            + (" with byte fallback (SentencePiece style)" if model.get("byte_fallback") else "")
        )


def _from_hf(writer: gguf.GGUFWriter, tokenizer, config, vocab_size: int) -> dict:
    _check_byte_level_bpe(tokenizer)
    tokens, types = vocab_tokens(tokenizer, vocab_size)
    pre = detect_pre(tokenizer)
    with tempfile.TemporaryDirectory(prefix="workbench-gguf-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        config.to_json_file(Path(folder) / "config.json")
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre or NO_MATCH)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special.add_to_gguf(writer, quiet=True)
    note = (
        None
        if pre
        else f"tokenizer.ggml.pre is {NO_MATCH!r}, but this tokenizer's pre-tokenizer splits text "
        "like none of llama.cpp's that the workbench can check: llama.cpp may split some text "
        "differently"
    )
    return {
        "source": "built from the model's tokenizer",
        "pre": pre or NO_MATCH,
        "tokens": len(tokens),
        "merges": len(special.merges),
        "chat_template": bool(special.chat_template),
        "special_token_ids": dict(special.special_token_ids),
        "note": note,
    }


def source_gguf(original) -> Path | None:
    """The GGUF a model was converted from, when it was (the default model)."""
    from core.models.default_model import default_model_dir, gguf_path

    folder = original.folder
    if folder is None or Path(folder).resolve() != default_model_dir().resolve():
        return None
    try:
        return gguf_path()
    except ModelNotFoundError:
        return None


def _copy(writer: gguf.GGUFWriter, source: Path, vocab_size: int) -> dict | None:
    reader = read_gguf(source)
    fields = {k: f for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    tokens = fields.get("tokenizer.ggml.tokens")
    if tokens is None or len(tokens.data) != vocab_size:
        return None  # not this model's vocabulary any more
    for key, field in fields.items():
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub_type)
    template = fields.get("tokenizer.chat_template")
    return {
        "source": f"copied from {source.name}",
        "pre": fields["tokenizer.ggml.pre"].contents() if "tokenizer.ggml.pre" in fields else None,
        "tokens": len(tokens.data),
        "merges": len(fields["tokenizer.ggml.merges"].data)
        if "tokenizer.ggml.merges" in fields
        else 0,
        "chat_template": template is not None,
        "note": None,
    }


def write_tokenizer(writer: gguf.GGUFWriter, original, vocab_size: int) -> dict:
    """Write the tokenizer keys; returns what was written, for the report."""
    source = source_gguf(original)
    copied = _copy(writer, source, vocab_size) if source is not None else None
    if copied is not None:
        return copied
    return _from_hf(writer, original.tokenizer, original.model.config, vocab_size)
