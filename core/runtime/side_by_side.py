"""The stakeholder demo: the original and a compressed model answer the same
prompt, their text streaming side by side.

The two generations advance in turns, one token each, rather than in two
threads: on a small CPU two concurrent generations would fight for the same
cores and both tokens/s figures would be wrong. Each token is still timed on
its own (``TextToken.step_s``), so each pane's speed is its model's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.models.loading import LoadedModel
from core.progress import CancelToken
from core.runtime.generation import GenerationSummary, TextToken, stream_generation
from core.runtime.sampling import GREEDY, Sampling

ORIGINAL, COMPRESSED = "original", "compressed"


@dataclass(frozen=True)
class PaneEvent:
    """A generation event for one pane of the demo."""

    pane: str  # ORIGINAL or COMPRESSED
    event: TextToken | GenerationSummary


def stream_side_by_side(
    original: LoadedModel,
    compressed: LoadedModel,
    prompt: str,
    max_new_tokens: int = 64,
    sampling: Sampling = GREEDY,
    chat: bool = False,
    cancel: CancelToken | None = None,
) -> Iterator[PaneEvent]:
    """Yield both models' tokens in turns until both are done (or cancelled)."""
    cancel = cancel or CancelToken()
    streams = {
        ORIGINAL: stream_generation(original, prompt, max_new_tokens, sampling, chat, cancel),
        COMPRESSED: stream_generation(compressed, prompt, max_new_tokens, sampling, chat, cancel),
    }
    while streams:
        for pane in list(streams):
            event = next(streams[pane], None)
            if event is None:
                del streams[pane]
                continue
            yield PaneEvent(pane, event)
