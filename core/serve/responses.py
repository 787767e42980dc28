"""OpenAI's response and stream-chunk shapes for completions and chat."""

from __future__ import annotations

import json
import secrets
import time


def new_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _envelope(answer_id: str, model: str, chat: bool, chunk: bool) -> dict:
    kind = "chat.completion" if chat else "text_completion"
    return {
        "id": answer_id,
        "object": f"{kind}.chunk" if chat and chunk else kind,
        "created": int(time.time()),
        "model": model,
    }


def full_answer(answer_id, model, chat, text, finish_reason, prompt_tokens, tokens) -> dict:
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
    else:
        choice = {"index": 0, "text": text, "logprobs": None}
    choice["finish_reason"] = finish_reason
    return {
        **_envelope(answer_id, model, chat, False),
        "choices": [choice],
        "usage": usage(prompt_tokens, tokens),
    }


def chunk(answer_id, model, chat, text=None, finish_reason=None, role=False) -> dict:
    """One streamed piece: ``text`` added, or the last chunk with ``finish_reason``."""
    if chat:
        delta = {"role": "assistant", "content": ""} if role else {}
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None}
    choice["finish_reason"] = finish_reason
    return {**_envelope(answer_id, model, chat, True), "choices": [choice]}


def usage_chunk(answer_id, model, chat, prompt_tokens, tokens) -> dict:
    """The last chunk when the client asked stream_options.include_usage."""
    return {
        **_envelope(answer_id, model, chat, True),
        "choices": [],
        "usage": usage(prompt_tokens, tokens),
    }


def sse(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()
