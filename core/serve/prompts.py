"""Prompt text to token ids: a completion's prompt as it is, a chat through
the tokenizer's own chat template (a plain "role: text" transcript when the
tokenizer has none). Runs on a request thread, under the served model's
tokenizer lock: the generation thread decodes with the same tokenizer."""

from __future__ import annotations

from core.runtime.chat_template import ChatTemplateError, chat_template_ids
from core.serve.api_errors import ApiError


def completion_ids(served, prompt: str) -> list[int]:
    _check_text(prompt, "prompt")
    with served.tokenizer_lock:
        ids = served.tokenizer(prompt).input_ids
    return _checked(served, list(ids))


def chat_ids(served, messages) -> list[int]:
    turns = [{"role": _role(m.role), "content": m.text} for m in messages]
    for turn in turns:
        _check_text(turn["content"], "messages")
    tokenizer = served.tokenizer
    with served.tokenizer_lock:
        if served.has_chat_template:
            try:
                ids = chat_template_ids(tokenizer, turns)
            except ChatTemplateError as err:
                raise ApiError(400, str(err), "messages") from None
        else:
            ids = tokenizer(plain_transcript(turns)).input_ids
    return _checked(served, list(ids))


def _check_text(text: str, param: str) -> None:
    from core.runtime.prompt_text import text_problem

    if problem := text_problem(text):
        raise ApiError(400, problem, param)


def plain_transcript(turns: list[dict]) -> str:
    lines = [f"{turn['role']}: {turn['content']}" for turn in turns]
    return "\n".join([*lines, "assistant:"])


def _role(role: str) -> str:
    return "system" if role == "developer" else role  # OpenAI's newer name for system


def _checked(served, ids: list[int]) -> list[int]:
    from core.models.tokenizer_fit import ids_past_embedding

    if not ids:
        raise ApiError(400, "the prompt is empty", "prompt")
    problem = ids_past_embedding(served.loaded, ids)
    if problem:
        raise ApiError(400, problem, "prompt")
    limit = served.max_prompt_tokens
    if len(ids) > limit:
        raise ApiError(
            400,
            f"the prompt has {len(ids)} tokens; this server takes at most {limit}",
            "prompt",
            "context_length_exceeded",
        )
    return ids
