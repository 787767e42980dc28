"""Bytes that never complete a character are shown as U+FFFD when the output
ends, never dropped: a tiny GPT-2 generated 8 tokens of one continuation byte
and `generate` printed nothing, its JSON text "" (sweep nine)."""

from __future__ import annotations

import dataclasses

from core.runtime.generation import (
    GenerationSummary,
    IncrementalDecoder,
    TextToken,
    stream_generation,
)
from core.runtime.torch_runner import TokenStep
from tests.tiny_models import tiny_tokenizer

CONTINUATION_BYTE = 162  # a byte-level token that is no character alone


def test_the_decoder_holds_a_partial_character_back_and_gives_it_at_the_end():
    decoder = IncrementalDecoder(tiny_tokenizer())
    assert [decoder.add(CONTINUATION_BYTE) for _ in range(3)] == ["", "", ""]
    assert decoder.finish() == "\ufffd" * 3 and decoder.text == "\ufffd" * 3
    assert decoder.finish() == ""  # given once


def test_a_generation_of_only_such_bytes_ends_with_them_in_text_and_tail(
    tiny_llama_dir, monkeypatch
):
    from core.models.loading import load_model
    from core.runtime import generation

    loaded = load_model(str(tiny_llama_dir), device="cpu")

    def bytes_only(model, input_ids, max_new_tokens, *_args):
        for index in range(max_new_tokens):
            yield TokenStep(index, CONTINUATION_BYTE, 0.0, 0.001)

    monkeypatch.setattr(generation, "steps_function", lambda *_args: bytes_only)
    events = list(stream_generation(loaded, "Hello", max_new_tokens=4))
    streamed = "".join(e.text for e in events if isinstance(e, TextToken))
    (summary,) = [e for e in events if isinstance(e, GenerationSummary)]
    assert streamed == "" and summary.new_tokens == 4
    assert summary.text == summary.tail and summary.tail.startswith("\ufffd")
    assert dataclasses.asdict(summary)["tail"] == summary.tail


def test_control_characters_of_a_models_text_are_printed_as_escapes():
    from core.cli.terminal_text import visible

    assert visible("a\x1b[2Jb\x00c\x9b\x7f") == "a\\x1b[2Jb\\x00c\\x9b\\x7f"
    assert visible("line\n\ttab é ü 字") == "line\n\ttab é ü 字"  # text is left as it is
