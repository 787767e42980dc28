"""The demo classifier: the second model kind the workbench handles.

"Prepare the demo classifier" fine-tunes the bundled MiniLM encoder on the
film-review sentiment training split (``core.evaluate.sentiment_classifier``)
and caches the result as a Hugging Face folder in the workbench cache, next
to the converted default model: ``<cache>/models/minilm-sentiment`` (the
default settings, ~25 minutes on 2 CPU cores) or ``minilm-sentiment-fast``
(the small CI variant, seconds, too little data to learn the task). After
that ``load_model("demo-classifier")`` (or ``"demo-classifier-fast"``)
loads it in under a second; before, it raises a ModelNotFoundError saying how
to prepare it.

The folder is written into a temporary sibling and renamed, so a crash or a
cancel never leaves a half-written folder that looks complete; a marker file
records the settings and the test accuracy the job measured.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from core.default_model import cache_root
from core.errors import ModelNotFoundError
from core.jobs import CancelToken, Progress, ProgressSink, ignore_progress

DEFAULT_SOURCE = "demo-classifier"
FAST_SOURCE = "demo-classifier-fast"
# source name -> cache folder name
SOURCES = {DEFAULT_SOURCE: "minilm-sentiment", FAST_SOURCE: "minilm-sentiment-fast"}
# Bump when preparation changes, so old caches are prepared again.
PREPARATION_VERSION = 1
_COMPLETE = "workbench-classifier.json"


def classifier_dir(source: str = DEFAULT_SOURCE) -> Path:
    return cache_root() / "models" / SOURCES[source]


def _settings(source: str):
    from core.evaluate.sentiment_classifier import FAST, ClassifierSettings

    return FAST if source == FAST_SOURCE else ClassifierSettings()


def _marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / _COMPLETE).read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("version") == PREPARATION_VERSION else None


def is_prepared(source: str = DEFAULT_SOURCE) -> bool:
    marker = _marker(classifier_dir(source))
    return marker is not None and marker.get("settings") == asdict(_settings(source))


def prepared_dir(source: str = DEFAULT_SOURCE) -> Path:
    """The cached folder, or ModelNotFoundError saying how to prepare it."""
    if not is_prepared(source):
        how = "workbench train-classifier" + (" --fast" if source == FAST_SOURCE else "")
        raise ModelNotFoundError(
            f"The {source} is not prepared yet: run `{how}` (or the window's 'prepare the demo "
            "classifier' job) to fine-tune MiniLM on the sentiment training films and cache it."
        )
    return classifier_dir(source)


def trained_note(folder: Path) -> str:
    """One line on how the cached classifier was trained and what it scored."""
    marker = _marker(folder) or {}
    result = marker.get("result", {})
    if not result:
        return "Demo classifier (no training record)."
    return (
        f"Demo classifier: {result['protocol']}; test accuracy when prepared "
        f"{result['accuracy']:.1%} ({result['correct']}/{result['examples']})."
    )


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
    source = FAST_SOURCE if fast else DEFAULT_SOURCE
    target = classifier_dir(source)
    settings = _settings(source)
    if is_prepared(source) and not force:
        result = ClassifierResult(**_marker(target)["result"])
        yield ClassifierReady(source, target, result, reused=True)
        return
    from core.export.atomic import atomic_folder

    target.parent.mkdir(parents=True, exist_ok=True)
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
            "version": PREPARATION_VERSION,
            "settings": asdict(settings),
            "result": asdict(result),
        }
        (staging / _COMPLETE).write_text(json.dumps(marker, indent=2))
    progress(Progress(f"The {source} is ready", 1.0))
    yield ClassifierReady(source, target, result, reused=False)
