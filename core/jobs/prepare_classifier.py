"""The Prepare classifier job: fine-tune and cache the demo sentiment
classifier once (found in the cache afterwards), then load it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.jobs import CancelToken, ProgressSink, ignore_progress


@dataclass(frozen=True)
class PrepareClassifierRequest:
    fast: bool = False  # the small CI variant
    force: bool = False  # fine-tune again even if cached
    load: bool = True  # load it when ready (the window); the CLI only prepares
    threads: int | None = None


def prepare_classifier(
    request: PrepareClassifierRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield the training events and ClassifierReady, then the LoadedModel."""
    from core.demo_classifier import ClassifierReady, prepare_demo_classifier
    from core.loading import load_model
    from core.runtime.device import set_threads

    set_threads(request.threads)
    ready = None
    for event in prepare_demo_classifier(request.fast, progress, cancel, request.force):
        ready = event if isinstance(event, ClassifierReady) else ready
        yield event
    if request.load:
        yield load_model(ready.source, progress=progress, cancel=cancel)
