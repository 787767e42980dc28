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
from dataclasses import asdict
from pathlib import Path

from core.errors import ModelNotFoundError
from core.models.default_model import cache_root

DEFAULT_SOURCE = "demo-classifier"
FAST_SOURCE = "demo-classifier-fast"
# source name -> cache folder name
SOURCES = {DEFAULT_SOURCE: "minilm-sentiment", FAST_SOURCE: "minilm-sentiment-fast"}
# Bump when preparation changes, so old caches are prepared again.
PREPARATION_VERSION = 1
COMPLETE_FILE = "workbench-classifier.json"


def classifier_dir(source: str = DEFAULT_SOURCE) -> Path:
    return cache_root() / "models" / SOURCES[source]


def _settings(source: str):
    from core.models.classifier_settings import FAST, ClassifierSettings

    return FAST if source == FAST_SOURCE else ClassifierSettings()


def _marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / COMPLETE_FILE).read_text())
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
