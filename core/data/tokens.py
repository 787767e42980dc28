"""Texts as token ids, the one way every window is built from: perplexity,
fidelity, calibration and distillation windows.

BOS follows transformers' convention: a tokenizer that prepends its BOS
token when encoding with special tokens (``add_bos_token``, or its post-
processor) has a model that expects one at the start of its input, so every
window then starts with BOS. It is context only: never a scored token. Some
families lose much of their quality without it.
"""

from __future__ import annotations


def bos_to_prepend(tokenizer) -> int | None:
    """The BOS token id when ``tokenizer`` adds one at the start of an encoding, else None."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    with_special = tokenizer("a", add_special_tokens=True).input_ids
    plain = tokenizer("a", add_special_tokens=False).input_ids
    return bos if with_special[:1] == [bos] and plain[:1] != [bos] else None


def bos_label(tokenizer) -> str:
    """What a protocol line says about BOS."""
    return "BOS prepended" if bos_to_prepend(tokenizer) is not None else "no BOS"


def document_stream(tokenizer, texts, max_tokens: int | None = None) -> list[int]:
    """``texts`` each tokenized alone (no special tokens) and joined by the
    tokens of a blank line; with ``max_tokens``, tokenized one by one until
    the stream is that long."""
    separator = tokenizer("\n\n", add_special_tokens=False).input_ids
    # verbose=False: a long document is not a model input, so no length warning
    if max_tokens is None:
        encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False).input_ids
    else:
        encoded = (tokenizer(t, add_special_tokens=False, verbose=False).input_ids for t in texts)
    ids: list[int] = []
    for document in encoded:
        if ids:
            ids.extend(separator)
        ids.extend(document)
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    return ids


def with_bos(ids, bos: int | None):
    """A window of token ids (list or 1-D tensor) with its first token replaced
    by ``bos`` (unchanged when None): the window keeps its length and its
    last tokens, the ones scored."""
    if bos is None:
        return ids
    if isinstance(ids, list):
        return [bos, *ids[1:]]
    out = ids.clone()
    out[0] = bos
    return out
