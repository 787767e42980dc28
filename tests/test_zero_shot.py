"""Zero-shot sentiment: exact label log-likelihoods, honest accuracy summary."""

import pytest
import torch

from core.errors import Cancelled
from core.evaluate.zero_shot import (
    AccuracyPartial,
    AccuracyResult,
    ZeroShotProtocol,
    continuation_logprobs,
    evaluate_zero_shot,
    summarise,
)
from core.models.loading import load_model
from core.progress import CancelToken


def hf_logprob(model, tokenizer, prompt, continuation):
    """Independent reference: HF's labels= loss over prompt + continuation tokens."""
    prompt_ids = tokenizer(prompt, return_tensors="pt").input_ids
    cont_ids = tokenizer(continuation, add_special_tokens=False, return_tensors="pt").input_ids
    ids = torch.cat([prompt_ids, cont_ids], dim=1)
    labels = ids.clone()
    labels[:, : prompt_ids.shape[1]] = -100
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss
    return -loss.item() * cont_ids.shape[1]


def test_label_scores_equal_hugging_face_loss(tiny_dir):
    loaded = load_model(str(tiny_dir), device="cpu")
    words = [" positive", " negative", " the"]  # multi- and single-token in the tiny vocabulary
    lengths = [len(loaded.tokenizer(w, add_special_tokens=False).input_ids) for w in words]
    assert max(lengths) > 1 and min(lengths) == 1  # both code paths are exercised
    prompt = "Review: a tedious, overlong film.\nSentiment:"
    with torch.inference_mode():
        ours = continuation_logprobs(loaded.model, loaded.tokenizer, prompt, words)
    for word, score in zip(words, ours, strict=True):
        assert score == pytest.approx(
            hf_logprob(loaded.model, loaded.tokenizer, prompt, word), rel=1e-4
        )


def test_always_answering_the_majority_label_is_flagged_near_chance():
    truths = ["positive"] * 66 + ["negative"] * 34
    summary = summarise(["positive"] * 100, truths, ["negative", "positive"])
    assert summary["accuracy"] == summary["majority_rate"] == 0.66
    assert summary["near_chance"]
    assert summary["predicted_share"] == {"negative": 0.0, "positive": 1.0}
    assert summary["ci95_low"] < 0.66 < summary["ci95_high"]


def test_clearly_better_than_chance_is_not_flagged():
    truths = ["positive"] * 50 + ["negative"] * 50
    answers = truths[:45] + ["negative"] * 5 + truths[50:95] + ["positive"] * 5
    summary = summarise(answers, truths, ["negative", "positive"])
    assert summary["accuracy"] == 0.9 and not summary["near_chance"]


def test_partials_result_and_cancel_on_a_tiny_model(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    protocol = ZeroShotProtocol(quick_examples=6)
    events = list(evaluate_zero_shot(loaded.model, loaded.tokenizer, protocol))
    assert [type(e) for e in events] == [AccuracyPartial] * 6 + [AccuracyResult]
    result = events[-1]
    assert result.examples == 6 and 0 <= result.correct <= 6
    assert sum(result.predicted_share.values()) == pytest.approx(1.0)
    assert "first 6 film reviews of the test split" in result.protocol
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        for _ in evaluate_zero_shot(loaded.model, loaded.tokenizer, protocol, cancel):
            cancel.cancel()


@pytest.mark.real_model
def test_default_model_beats_the_majority_rate_on_validation():
    """Deterministic (fixed data, model and scoring): guards the prompt and the scoring."""
    loaded = load_model("default", device="cpu")
    protocol = ZeroShotProtocol(split="validation", quick_examples=80)
    *_, result = evaluate_zero_shot(loaded.model, loaded.tokenizer, protocol)
    assert result.accuracy > result.majority_rate + 0.1
    assert not result.near_chance
