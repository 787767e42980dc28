"""The Prepare classifier job: fine-tune and cache the demo sentiment
classifier once (found in the cache afterwards), then load it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from core.models import demo_classifier
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress


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
    from core.models.loading import load_model
    from core.runtime.device import set_threads

    set_threads(request.threads)
    ready = None
    for event in prepare_demo_classifier(request.fast, progress, cancel, request.force):
        ready = event if isinstance(event, ClassifierReady) else ready
        yield event
    if request.load:
        yield load_model(ready.source, progress=progress, cancel=cancel)


@dataclass(frozen=True)
class ClassifierReady:
    """The prepare job's last event: where the classifier lies and how it scored."""

    source: str
    folder: Path
    result: object  # core.evaluate.sentiment_classifier.ClassifierResult
    reused: bool  # True when the cache already held it and nothing was trained


def prepare_demo_classifier(
    fast: bool = False,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    force: bool = False,
) -> Iterator[object]:
    """Fine-tune and cache the demo classifier, yielding the training job's
    events (TrainStep, AccuracyPartial, ClassifierResult), then ClassifierReady.
    A prepared cache is reused unless ``force``."""
    from core.evaluate.sentiment_classifier import ClassifierResult, finetune_sentiment_classifier

    cancel = cancel or CancelToken()
    source = demo_classifier.FAST_SOURCE if fast else demo_classifier.DEFAULT_SOURCE
    target = demo_classifier.classifier_dir(source)
    settings = demo_classifier._settings(source)
    if demo_classifier.is_prepared(source) and not force:
        yield _reused(source, target)
        return
    from core.atomic_folder import atomic_folder
    from core.cache_lock import building

    with building(target, cancel, progress):
        if demo_classifier.is_prepared(source) and not force:  # prepared meanwhile
            yield _reused(source, target)
            return
        # Trained into a temporary sibling and renamed, so a cancel or a crash
        # never leaves a folder that looks prepared.
        with atomic_folder(target, overwrite=True) as staging:
            result = None
            progress(Progress(f"Fine-tuning the {source}", None))
            for event in finetune_sentiment_classifier(settings, cancel, output_dir=staging):
                if isinstance(event, ClassifierResult):
                    result = event
                yield event
            progress(Progress("Caching the classifier", 0.99))
            marker = {
                "version": demo_classifier.PREPARATION_VERSION,
                "settings": asdict(settings),
                "result": asdict(result),
            }
            (staging / demo_classifier.COMPLETE_FILE).write_text(json.dumps(marker, indent=2))
    progress(Progress(f"The {source} is ready", 1.0))
    yield ClassifierReady(source, target, result, reused=False)


def _reused(source: str, target: Path) -> ClassifierReady:
    from core.evaluate.sentiment_classifier import ClassifierResult

    result = ClassifierResult(**demo_classifier._marker(target)["result"])
    return ClassifierReady(source, target, result, reused=True)
