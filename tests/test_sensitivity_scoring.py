"""How a sensitivity cell is scored, checked against the plain way: the
probed copy shares the original's tensors but never writes them, replaying
the earlier layers gives exactly a full forward's scores, and top-k KL with
the whole vocabulary is the full KL."""

from __future__ import annotations

import pytest
import torch

from core.evaluate.fidelity import fidelity_to_logits
from core.evaluate.perplexity import PerplexityProtocol, perplexity_windows
from core.evaluate.top_k_reference import TopKReference
from core.jobs.layer_probe import _logits, probed_copy, record_original, scored
from core.jobs.sensitivity import SensitivityMap, SensitivityRequest, sensitivity
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.base import PassContext
from core.passes.recipe import Recipe, apply_recipe


@pytest.fixture(scope="module")
def models(tiny_llama_dir, tiny_gpt2_dir):
    return {
        "llama": load_model(str(tiny_llama_dir), device="cpu"),
        "gpt2": load_model(str(tiny_gpt2_dir), device="cpu"),
    }


def _windows(loaded, count=2):
    protocol = PerplexityProtocol(context_tokens=128, stride=64, split="dev", quick_windows=count)
    return perplexity_windows(loaded.tokenizer, protocol)[:count]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_replayed_earlier_layers_score_as_a_full_forward(models, family):
    loaded = models[family]
    windows = _windows(loaded)
    record = record_original(loaded.model, windows, top_k=16)
    probe = R["int4_weight_only"](32, "rtn", layers="1")
    probed = probe.apply(probed_copy(loaded.model, 1), PassContext(None))
    fast = scored(probed, 1, record)
    whole = apply_recipe(loaded, Recipe((probe,))).loaded.model  # the plain way: all of it
    with torch.inference_mode():
        pairs = zip(record.references, windows, strict=True)
        plain = [r.score(_logits(whole, w), w) for r, w in pairs]
    for a, b in zip(fast, plain, strict=True):
        assert a.kl == pytest.approx(b.kl, rel=1e-4, abs=1e-7)
        assert a.nll_delta == pytest.approx(b.nll_delta, rel=1e-4, abs=1e-7)
    assert max(s.kl for s in fast) > 0  # the probe changed something


def test_top_k_over_the_whole_vocabulary_is_the_full_kl(models):
    loaded = models["llama"]
    (window,) = _windows(loaded, 1)
    with torch.inference_mode():
        ref = _logits(loaded.model, window)
    noisy = loaded.model.lm_head  # a candidate whose logits are the original's plus noise
    generator = torch.Generator().manual_seed(0)
    cand = ref + 0.5 * torch.randn(ref.shape, generator=generator)

    class Candidate(torch.nn.Module):
        def forward(self, input_ids):
            return type("Out", (), {"logits": cand[None]})

        def parameters(self):
            return noisy.parameters()

    full = fidelity_to_logits(ref, Candidate(), window)
    vocab = ref.shape[-1]
    exact = TopKReference.of(ref, window, vocab).score(cand, window)
    assert exact.kl == pytest.approx(full.kl, rel=1e-4)
    assert exact.nll_delta == pytest.approx(full.nll_delta, rel=1e-4)
    few = TopKReference.of(ref, window, 8).score(cand, window)
    assert 0 < few.kl <= exact.kl + 1e-7  # merging the tail never adds KL
    assert few.nll_delta == pytest.approx(exact.nll_delta, rel=1e-5)


@pytest.mark.parametrize(
    ("probe", "parts"),
    [
        (R["int4_weight_only"](32, "awq"), ()),  # AWQ folds into norms: whole layers only
        (R["int4_weight_only"](32, "gptq"), ("attention", "mlp")),
        (R["int8_weight_only"](), ("attention", "mlp")),
    ],
    ids=["awq", "gptq", "int8"],
)
def test_the_original_is_never_written(models, probe, parts):
    """The probed copy shares every tensor outside its layer with the
    original: a pass writing one of them would corrupt the user's model."""
    from core.jobs.experiment import ExperimentSettings

    loaded = models["llama"]
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    settings = ExperimentSettings(calibration_windows=2, calibration_length=32)
    request = SensitivityRequest(loaded, probe, parts, 1, settings)
    result = list(sensitivity(request))[-1]
    assert isinstance(result, SensitivityMap) and len(result.cells) == 2 * len(parts or "x")
    after = loaded.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_components_are_cells_and_cost_less_than_their_layer(models):
    loaded = models["llama"]
    probe = R["int4_weight_only"](32, "rtn")
    by_part = list(sensitivity(SensitivityRequest(loaded, probe, ("attention", "mlp"), 1)))[-1]
    whole = list(sensitivity(SensitivityRequest(loaded, probe, (), 1)))[-1]
    assert [(c.layer, c.part) for c in by_part.cells] == [
        (0, "attention"), (0, "mlp"), (1, "attention"), (1, "mlp")
    ]  # fmt: skip
    assert "one component compressed at a time" in by_part.protocol
    for layer in whole.cells:  # each component alone hurts less than both at once
        parts = [c.mean_kl for c in by_part.cells if c.layer == layer.layer]
        assert max(parts) < layer.mean_kl


def test_a_scope_the_probe_refuses_is_refused_before_any_work(models):
    from core.passes.recipe import RecipeError

    awq = R["int4_weight_only"](32, "awq")  # folds into norms: whole layers only
    with pytest.raises(RecipeError, match="limit it by layers, not parts"):
        next(sensitivity(SensitivityRequest(models["llama"], awq, ("attention",), 1)))
