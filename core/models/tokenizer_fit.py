"""A tokenizer checked against the embedding it feeds.

A folder can hold another model's tokenizer (copied by hand, or a
tokenizer.json from a bigger vocabulary): every token id past the
embedding's rows then fails inside torch's embedding lookup, or inside
ONNX Runtime's Gather, with an index error at the first prompt. The
tokenizer's own vocabulary (``vocab_size``, without added special tokens)
must fit; a real model may pad its embedding past the tokenizer (SmolLM2,
Qwen), never the reverse. Added tokens past the rows (a pad token added
after training) are only noted: ordinary text never produces them.
"""

from __future__ import annotations

from core.errors import CorruptModelError


def embedding_rows(model) -> int | None:
    """Rows of the token embedding (None where the model does not expose one)."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    rows = getattr(embedding, "num_embeddings", None)  # nn.Embedding and its quantised kin
    return rows if isinstance(rows, int) else None


def check_tokenizer_fits(tokenizer, rows: int | None, where: str) -> list[str]:
    """Refuse a tokenizer whose vocabulary outgrows ``rows``; notes for added
    tokens that do."""
    if rows is None:
        return []
    base = getattr(tokenizer, "vocab_size", None)
    if isinstance(base, int) and base > rows:
        raise CorruptModelError(
            f"{where}: the tokenizer has {base:,} tokens but the model's embedding has "
            f"{rows:,} rows: the tokenizer belongs to another model"
        )
    beyond = len(tokenizer) - rows
    if beyond > 0:
        return [
            f"{beyond} added token(s) of the tokenizer have no embedding row: "
            "a text holding them cannot be run"
        ]
    return []


def ids_past_embedding(loaded, ids: list[int]) -> str | None:
    """Why ``ids`` cannot be run by ``loaded``, or None: a token added to the
    tokenizer after training (a pad token) may lie past the embedding's rows
    (noted at load), and a prompt holding it would fail inside the lookup."""
    rows = embedding_rows(loaded.model) or getattr(loaded.model.config, "vocab_size", None)
    largest = max(ids, default=-1)
    if not rows or largest < rows:
        return None
    token = loaded.tokenizer.convert_ids_to_tokens(largest)
    return (
        f"the prompt holds the token {token!r:.40} (id {largest}), which has no row in the "
        f"model's {rows}-row embedding (a token added to the tokenizer after training)"
    )
