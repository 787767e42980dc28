"""The model behind the server, with what every request needs from it: its
name, the prompt limit inside its context, its stop tokens, and the lock
that keeps its tokenizer to one thread at a time."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServedModel:
    loaded: object  # core.models.loading.LoadedModel, on the runtime it is served on
    model_id: str
    max_prompt_tokens: int  # the limit, or less where the context is shorter
    context: int  # prompt + generated tokens the model can attend to
    stop_ids: frozenset[int]
    has_chat_template: bool
    lookup: object = None  # core.runtime.prompt_lookup.PromptLookup for greedy requests, or None
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    def room_after(self, prompt_tokens: int) -> int:
        """New tokens that fit in the context after a prompt."""
        return self.context - prompt_tokens


def serve_model(loaded, model_id: str, limits, lookup=None) -> ServedModel:
    """``loaded`` (a causal LM) ready to serve under ``limits`` (ServeLimits),
    with prompt lookup (a PromptLookup) for greedy requests or without."""
    from core.models.loading import require_causal_lm
    from core.runtime.generation import context_length
    from core.runtime.torch_runner import stop_token_ids

    require_causal_lm(loaded, "serving")
    context = context_length(loaded.model.config)
    return ServedModel(
        loaded,
        model_id,
        min(limits.max_prompt_tokens, context - 1),
        context,
        frozenset(stop_token_ids(loaded.model, loaded.tokenizer)),
        bool(getattr(loaded.tokenizer, "chat_template", None)),
        lookup,
    )
