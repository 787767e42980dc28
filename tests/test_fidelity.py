"""Fidelity of a candidate to its reference: KL, top-1 agreement, generations side by side."""

import copy
import math

import pytest
import torch

from core.errors import Cancelled
from core.evaluate.fidelity import (
    FidelityPartial,
    FidelityResult,
    compute_fidelity,
    evaluate_fidelity,
)
from core.evaluate.perplexity import PerplexityProtocol, perplexity_windows
from core.evaluate.side_by_side import side_by_side_generations
from core.models.loading import load_model
from core.progress import CancelToken
from core.runtime.generation import GenerationSummary, stream_generation

SMALL = PerplexityProtocol(context_tokens=48, stride=16, quick_windows=3, source="pydoc")


@pytest.fixture(scope="module")
def pair(tiny_llama_dir):
    """A tiny reference and a copy with noise added to its weights."""
    reference = load_model(str(tiny_llama_dir), device="cpu")
    candidate = copy.deepcopy(reference.model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in candidate.parameters():
            p.add_(torch.randn_like(p) * 2.0 * p.std())
    windows = perplexity_windows(reference.tokenizer, SMALL)
    return reference, candidate, windows


def test_a_model_against_itself_is_perfectly_faithful(pair):
    reference, _, windows = pair
    result = compute_fidelity(reference.model, reference.model, reference.tokenizer, windows)
    assert result.mean_kl == pytest.approx(0.0, abs=1e-6)
    assert result.top1_agreement == 1.0
    assert result.ppl_ratio == pytest.approx(1.0, abs=1e-6)
    assert result.tokens == len(windows) * SMALL.context_tokens


def test_kl_and_agreement_match_an_independent_computation(pair):
    reference, candidate, windows = pair
    result = compute_fidelity(reference.model, candidate, reference.tokenizer, windows)
    kls, agree, ref_loss, cand_loss = [], [], [], []
    with torch.no_grad():
        for w in windows:
            ref = reference.model(w.unsqueeze(0)).logits[0]
            cand = candidate(w.unsqueeze(0)).logits[0]
            ref_loss.append(reference.model(w.unsqueeze(0), labels=w.unsqueeze(0)).loss.item())
            cand_loss.append(candidate(w.unsqueeze(0), labels=w.unsqueeze(0)).loss.item())
            p, q = (
                torch.distributions.Categorical(logits=ref),
                torch.distributions.Categorical(logits=cand),
            )
            kls.append(torch.distributions.kl_divergence(p, q).mean().item())
            agree.append((ref.argmax(-1) == cand.argmax(-1)).float().mean().item())
    assert result.mean_kl > 0.01
    assert result.mean_kl == pytest.approx(sum(kls) / len(kls), rel=1e-4)
    assert result.top1_agreement == pytest.approx(sum(agree) / len(agree))
    assert result.top1_agreement < 1.0
    assert result.kl_ci95_halfwidth > 0
    ratio = math.exp((sum(cand_loss) - sum(ref_loss)) / len(windows))  # HF's own losses
    assert result.ppl_ratio == pytest.approx(ratio, rel=1e-4)
    assert result.ppl_ratio_ci95_low < result.ppl_ratio < result.ppl_ratio_ci95_high


def test_partials_after_every_window_and_cancel(pair):
    reference, candidate, windows = pair
    events = list(evaluate_fidelity(reference.model, candidate, reference.tokenizer, windows))
    assert [type(e) for e in events] == [FidelityPartial] * len(windows) + [FidelityResult]
    assert events[-2].mean_kl == events[-1].mean_kl
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        for _ in evaluate_fidelity(
            reference.model, candidate, reference.tokenizer, windows, cancel
        ):
            cancel.cancel()


def test_models_with_different_vocabularies_are_refused(pair, tiny_gpt2_dir):
    reference, _, windows = pair
    other = load_model(str(tiny_gpt2_dir), device="cpu").model
    other.resize_token_embeddings(other.config.vocab_size + 8)
    with pytest.raises(ValueError, match="do not share a vocabulary"):
        compute_fidelity(reference.model, other, reference.tokenizer, windows)


def test_generations_side_by_side(pair):
    reference, candidate, _ = pair
    prompts = ("class", "def")
    same = list(
        side_by_side_generations(
            reference.model, reference.model, reference.tokenizer, prompts, max_new_tokens=8
        )
    )
    assert [p.prompt for p in same] == list(prompts)
    assert all(p.identical and p.reference == p.candidate for p in same)
    summary = list(stream_generation(reference, "class", max_new_tokens=8))[-1]
    assert isinstance(summary, GenerationSummary)
    assert same[0].reference == summary.text  # the same greedy tokens as the generate job
    different = list(
        side_by_side_generations(
            reference.model, candidate, reference.tokenizer, prompts, max_new_tokens=8
        )
    )
    assert not all(p.identical for p in different)
    assert all(p.same_tokens < 8 for p in different if not p.identical)
