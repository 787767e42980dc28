"""Perplexity on fixed windows: equal to Hugging Face's own loss, stable windows, live partials."""

import hashlib
import math
from dataclasses import replace

import pytest
import torch

from core.data import texts
from core.errors import Cancelled
from core.evaluate.hf_reference import hf_labels_perplexity
from core.evaluate.intervals import mean_interval, wilson_interval
from core.evaluate.perplexity import (
    FULL,
    PerplexityPartial,
    PerplexityProtocol,
    PerplexityResult,
    compute_perplexity,
    evaluate_perplexity,
    perplexity_windows,
    spread,
    token_stream,
)
from core.models.loading import load_model
from core.progress import CancelToken

# Small enough for tiny models and the pydoc text (always installed).
SMALL = PerplexityProtocol(
    context_tokens=64, stride=32, quick_windows=3, full_windows=9, source="pydoc"
)


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_perplexity_equals_hugging_face_labels_loss(tiny_dir, mode):
    loaded = load_model(str(tiny_dir), device="cpu")
    protocol = SMALL.with_mode(mode)
    windows = perplexity_windows(loaded.tokenizer, protocol)
    ours = compute_perplexity(loaded.model, loaded.tokenizer, protocol)
    reference = hf_labels_perplexity(loaded.model, windows, protocol.stride)
    assert ours.windows == len(windows) == protocol.windows
    assert ours.tokens_scored == len(windows) * protocol.stride
    assert ours.ppl == pytest.approx(reference, rel=1e-3)
    assert ours.ppl > 50  # random weights: far from a trained model's perplexity


def test_windows_are_fixed_spread_out_and_quick_is_a_subset_of_full(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    quick = perplexity_windows(loaded.tokenizer, SMALL)
    full = perplexity_windows(loaded.tokenizer, SMALL.with_mode(FULL))
    again = perplexity_windows(loaded.tokenizer, SMALL)
    assert all(torch.equal(a, b) for a, b in zip(quick, again, strict=True))
    assert all(w.numel() == SMALL.context_tokens for w in full)
    assert all(any(torch.equal(q, f) for f in full) for q in quick)
    stream = token_stream(loaded.tokenizer, "pydoc")
    last_start = (stream.numel() - SMALL.context_tokens) // SMALL.stride * SMALL.stride
    assert torch.equal(full[0], stream[: SMALL.context_tokens])  # spans the whole stream
    assert torch.equal(full[-1], stream[last_start : last_start + SMALL.context_tokens])


def test_spread_picks_evenly_and_never_repeats():
    assert spread(3, 9) == [0, 4, 8]
    assert spread(5, 3) == [0, 1, 2]
    assert spread(1, 10) == [0]
    picks = spread(200, 1063)
    assert len(set(picks)) == 200 and picks[0] == 0 and picks[-1] == 1062


def test_partials_after_every_window_then_the_result(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    events = list(evaluate_perplexity(loaded.model, loaded.tokenizer, SMALL))
    partials, result = events[:-1], events[-1]
    assert all(isinstance(p, PerplexityPartial) for p in partials)
    assert isinstance(result, PerplexityResult)
    assert [p.windows_done for p in partials] == [1, 2, 3]
    assert partials[0].ci95_halfwidth is None and partials[1].ci95_halfwidth > 0
    assert partials[-1].ppl == result.ppl
    assert result.ci95_low < result.ppl < result.ci95_high
    assert result.ci95_halfwidth == pytest.approx((result.ci95_high - result.ci95_low) / 2)
    assert partials[0].ci95_low is None and 0 < partials[1].ci95_low < partials[1].ppl
    assert (partials[-1].ci95_low, partials[-1].ci95_high) == (result.ci95_low, result.ci95_high)
    assert result.mean_nll == pytest.approx(math.log(result.ppl))
    assert "3 windows of 64 tokens" in result.protocol and "last 32" in result.protocol


def test_cancel_stops_between_windows(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    cancel = CancelToken()
    seen = []
    with pytest.raises(Cancelled):
        for event in evaluate_perplexity(loaded.model, loaded.tokenizer, SMALL, cancel):
            seen.append(event)
            cancel.cancel()
    assert len(seen) == 1


def test_protocol_rejects_nonsense():
    with pytest.raises(ValueError):
        PerplexityProtocol(context_tokens=64, stride=64)
    with pytest.raises(ValueError):
        PerplexityProtocol(quick_windows=20, full_windows=10)
    with pytest.raises(ValueError):
        PerplexityProtocol(mode="medium")


def test_text_shorter_than_a_window_is_a_clear_error(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    with pytest.raises(ValueError, match="fewer than one window"):
        perplexity_windows(
            loaded.tokenizer, PerplexityProtocol(context_tokens=10**7, source="pydoc")
        )


def test_windows_longer_than_the_model_context_are_refused(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")  # 256 positions
    with pytest.raises(ValueError, match="exceed the model's context of 256"):
        compute_perplexity(loaded.model, loaded.tokenizer, PerplexityProtocol(source="pydoc"))


def test_intervals_match_textbook_values():
    wilson = wilson_interval(8, 10)  # Wilson (1927) / Newcombe (1998): 0.490 to 0.943
    assert (round(wilson.low, 3), round(wilson.high, 3)) == (0.490, 0.943)
    none = wilson_interval(0, 20)  # stays inside [0, 1] where mean +- z*SE collapses to [0, 0]
    assert none.low == pytest.approx(0.0, abs=1e-12) and none.high == pytest.approx(0.161, abs=1e-3)
    interval = mean_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, se 1/sqrt(3)
    assert interval.halfwidth == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t, 2 df
    assert mean_interval([1.0]) is None


@pytest.mark.real_model
def test_default_model_perplexity_equals_hugging_face_labels_loss():
    loaded = load_model("default", device="cpu")
    protocol = PerplexityProtocol(context_tokens=128, stride=64, quick_windows=3, full_windows=30)
    windows = perplexity_windows(loaded.tokenizer, protocol)
    ours = compute_perplexity(loaded.model, loaded.tokenizer, protocol, windows=windows)
    assert ours.ppl == pytest.approx(
        hf_labels_perplexity(loaded.model, windows, protocol.stride), rel=1e-3
    )
    assert 5 < ours.ppl < 100  # a trained 135M model on news; random weights give ~50,000


def test_dev_split_is_other_text_and_its_label_says_dev(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    dev = replace(SMALL, split="dev")
    report_windows = perplexity_windows(loaded.tokenizer, SMALL)
    dev_windows = perplexity_windows(loaded.tokenizer, dev)
    assert not any(torch.equal(d, r) for d in dev_windows for r in report_windows)
    result = compute_perplexity(loaded.model, loaded.tokenizer, dev)
    assert "over the dev split of Python help topics" in result.protocol
    assert "report split" in compute_perplexity(loaded.model, loaded.tokenizer, SMALL).protocol
    with pytest.raises(ValueError, match="split must be one of report, dev"):
        replace(SMALL, split="training")


def _text_of_tokens(tokenizer, count: int) -> str:
    """A prefix of the pydoc help text that tokenizes to ``count`` tokens."""
    from core.data.tokens import document_stream

    text = "\n\n".join(texts.report_texts(texts.PYDOC))
    low, high = 0, len(text)
    while low < high:  # the shortest prefix with at least ``count`` tokens
        mid = (low + high) // 2
        if len(document_stream(tokenizer, [text[:mid].strip()])) < count:
            low = mid + 1
        else:
            high = mid
    return text[:low].strip()


def test_label_names_the_windows_and_text_actually_scored(tiny_gpt2_dir, tmp_path):
    """200 windows asked of a text that holds 22: the label says 22, and the file."""
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    file = tmp_path / "notes.txt"
    file.write_text(_text_of_tokens(loaded.tokenizer, 64 + 21 * 32), encoding="utf-8")
    protocol = PerplexityProtocol(
        context_tokens=64,
        stride=32,
        quick_windows=10,
        full_windows=200,
        mode=FULL,
        text_file=str(file),
    )
    result = compute_perplexity(loaded.model, loaded.tokenizer, protocol)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
    assert result.windows == 22 and result.tokens_scored == 22 * 32
    asked = "full: 22 windows of 64 tokens (200 asked; the text holds 22)"
    assert result.protocol.startswith(asked)
    assert f"the file notes.txt (sha256 {digest})" in result.protocol
    assert "704 tokens" in result.protocol and "news" not in result.protocol
    assert "no BOS" in result.protocol
