"""The Side by side job (the stakeholder demo): the original and a
configuration answer the same prompt in turns, one token each, each timed
alone; the configuration runs on the chosen runtime."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from core.jobs.generate import _greedy
from core.jobs.run import _default_settings
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress

# A compiled decode is compiled for prompt + answer up to this many tokens
# (a longer one compiles again on its first step).
DEMO_TOKENS = 256


DEMO_ON_TEXT = "the side-by-side demo (two models answering one prompt)"


@dataclass(frozen=True)
class SideBySideRequest:
    original: object  # core.models.loading.LoadedModel
    recipe: object  # core.passes.recipe.Recipe, the configuration shown beside the original
    prompt: str
    max_new_tokens: int = 64
    sampling: object = field(default_factory=_greedy)
    chat: bool = False
    runtime: str = "torch"  # where the configuration runs; the original runs eager
    settings: object = field(default_factory=_default_settings)  # ExperimentSettings
    prebuilt: object = None  # a CompressedModel of this original and recipe, reused
    threads: int | None = None


def side_by_side(
    request: SideBySideRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield the CompressedModel when it was built now (so a caller can reuse
    it), then both panes' events."""
    from core.jobs.experiment import build_compressed
    from core.jobs.loaded_graph import DEMO, require_pytorch
    from core.jobs.on_runtime import check_exportable, prepare
    from core.models.loading import require_causal_lm
    from core.passes.recipe import validate
    from core.runtime.device import set_threads
    from core.runtime.registry import check_supports
    from core.runtime.side_by_side import stream_side_by_side

    if not request.recipe.passes:
        raise ValueError("set a compression first: the demo compares it with the original")
    validate(request.recipe)
    require_causal_lm(request.original, DEMO_ON_TEXT)  # before the compressed copy is built
    require_pytorch(request.original, DEMO)
    check_supports(request.runtime, request.original.task)
    check_exportable(request.runtime, request.original, request.recipe)  # before any build
    set_threads(request.threads)
    compressed = request.prebuilt
    if compressed is None:
        compressed = build_compressed(
            request.original, request.recipe, request.settings, progress, cancel
        )
        yield compressed
    runnable = prepare(compressed.loaded, request.runtime, DEMO_TOKENS, progress, cancel).loaded
    progress(Progress("Generating side by side", None))
    yield from stream_side_by_side(
        request.original,
        runnable,
        request.prompt,
        request.max_new_tokens,
        request.sampling,
        request.chat,
        cancel,
    )
