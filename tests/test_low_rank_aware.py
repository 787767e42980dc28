"""Low rank to a parameter budget (core/passes/low_rank_aware.py; SVD-LLM
whitening and gradient-weighted outputs in svd_llm.py, their statistics in
loss_statistics.py, ranks in rank_budget.py) on tiny models of several
families: the budget met exactly, the size estimate exact, the original
untouched, weights of low rank kept exactly, and, on inputs that are
correlated as real activations are, lower output error than plain SVD at
the same parameter count. Refusals in one line."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.models.linear_layers import block_linears, convert_conv1d_to_linear
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes import PassContext
from core.passes.base import OptionError
from core.passes.loss_statistics import collect_loss_statistics
from core.passes.rank_budget import WHOLE, Shape, kept_weights, share_ranks
from core.passes.recipe import Recipe, RecipeError, apply_recipe, pass_from_dict
from core.passes.size_estimate import estimate_size
from core.passes.svd_llm import (
    output_scale,
    truncated_factors,
    whitened_spectrum,
    whitening_factor,
)
from core.progress import CancelToken
from tests.tiny_models import save_tiny_model

FAMILIES = ("gpt2", "llama", "qwen2", "phi3", "gemma2")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("low-rank-aware")
    built = {}

    def folder(family):
        if family not in built:
            built[family] = save_tiny_model(family, root / family)
        return built[family]

    return folder


def text_windows(tokenizer, count: int = 4) -> list[torch.Tensor]:
    """64-token windows of the standard library's help texts."""
    from pydoc_data.topics import topics

    ids = tokenizer(" ".join(list(topics.values())[:8]), return_tensors="pt").input_ids[0]
    return [ids[i * 64 : (i + 1) * 64] for i in range(count)]


def block_weights(model) -> int:
    return sum(m.weight.numel() for _, m in block_linears(model))


@torch.no_grad()
def logits(model, windows) -> torch.Tensor:
    return torch.cat([model(input_ids=ids.view(1, -1)).logits for ids in windows])


@pytest.mark.parametrize("method", ["svd_llm", "svd"])
@pytest.mark.parametrize("family", FAMILIES)
def test_budget_met_size_as_estimated_original_untouched(folders, family, method):
    loaded = load_model(str(folders(family)), device="cpu")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    original = loaded.model
    dense = copy.deepcopy(original)
    convert_conv1d_to_linear(dense)
    dense_weights = block_weights(dense)
    config = R["low_rank_aware"](0.3, method)
    assert pass_from_dict(config.to_dict()) == config
    recipe = Recipe((config,))

    compressed = apply_recipe(loaded, recipe, text_windows(loaded.tokenizer))
    model = compressed.loaded.model

    # The budget: at least 30% of the block linears' weights gone, and not
    # much more (each class rounds its pool of ranks down by less than one).
    removed = 1 - block_weights(model) / dense_weights
    assert 0.3 <= removed < 0.32, removed
    assert any(isinstance(m, nn.Sequential) for m in model.modules())
    # The estimate from shapes alone is what was built. (Its split between
    # attention and MLP is not: the calibration text moves ranks between them.)
    estimate, measured = estimate_size(original, recipe), measure_size(model)
    assert estimate.total_bytes == measured.total_bytes
    assert sum(estimate.by_component.values()) == sum(measured.by_component.values())
    assert measured.total_bytes < measure_size(original).total_bytes
    # The original is bit-identical, and the factored model still runs.
    after = original.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.isfinite(logits(model, text_windows(loaded.tokenizer, 1))).all()


@torch.no_grad()
def _correlate_embeddings(model, inner: int = 6) -> None:
    """Token embeddings from a few directions plus a little noise: hidden
    states then lie near a low-dimensional space, as real activations do
    (random tiny models' are nearly white, where whitening has little to use)."""
    generator = torch.Generator().manual_seed(0)
    embedding = model.get_input_embeddings().weight
    vocab, width = embedding.shape
    low = torch.randn(vocab, inner, generator=generator) @ torch.randn(
        inner, width, generator=generator
    )
    embedding.copy_(low / inner**0.5 + 0.05 * torch.randn(vocab, width, generator=generator))


@pytest.mark.parametrize("family", FAMILIES)
def test_whitening_beats_plain_svd_at_the_same_parameter_count(folders, family):
    loaded = load_model(str(folders(family)), device="cpu")
    _correlate_embeddings(loaded.model)
    calibration = text_windows(loaded.tokenizer)
    reference = logits(loaded.model, calibration)
    error, weights = {}, {}
    for method in ("svd_llm", "svd"):
        recipe = Recipe((R["low_rank_aware"](0.4, method),))
        model = apply_recipe(loaded, recipe, calibration).loaded.model
        weights[method] = block_weights(model)
        error[method] = (logits(model, calibration) - reference).pow(2).mean().item()
    assert weights["svd_llm"] == weights["svd"]
    assert error["svd_llm"] < 0.1 * error["svd"], error


@torch.no_grad()
@pytest.mark.parametrize("family", FAMILIES)
def test_weights_of_low_rank_are_kept_exactly(folders, family):
    loaded = load_model(str(folders(family)), device="cpu")
    convert_conv1d_to_linear(loaded.model)
    for _, linear in block_linears(loaded.model):  # each weight exactly rank 3
        u, s, vh = torch.linalg.svd(linear.weight, full_matrices=False)
        linear.weight.copy_(u[:, :3] @ torch.diag(s[:3]) @ vh[:3])
    calibration = text_windows(loaded.tokenizer)
    # Half the weights removed leaves every layer far more than 3 ranks; the
    # allocation must give each its 3 (the rest carry no energy), and the
    # whitening's inverse must map them back exactly.
    model = apply_recipe(loaded, Recipe((R["low_rank_aware"](0.5),)), calibration).loaded.model
    assert any(isinstance(m, nn.Sequential) for m in model.modules())
    assert torch.allclose(logits(model, calibration), logits(loaded.model, calibration), atol=1e-4)


def test_one_layer_output_error_is_the_dropped_whitened_energy():
    torch.manual_seed(0)
    weight = torch.randn(48, 96, dtype=torch.float64)
    # Correlated inputs with uneven scales, as real activations have.
    x = (torch.randn(1024, 12) @ torch.randn(12, 96) + 0.1 * torch.randn(1024, 96)) * (
        torch.rand(96) * 4
    )
    x = x.double()
    gram = x.t() @ x
    factor = whitening_factor(gram, damp=0.0)
    assert torch.allclose(factor @ factor.t(), gram, rtol=1e-9, atol=1e-6)

    def error(pair):
        first, second = pair
        return (x @ (second @ first).t() - x @ weight.t()).pow(2).sum().item()

    rank = 10
    whitened = error(truncated_factors(weight, rank, factor))
    # SVD-LLM's point: the output error left is exactly the dropped singular
    # values of W S, so they measure each rank's worth.
    dropped = whitened_spectrum(weight, factor)[rank:].sum().item()
    assert whitened == pytest.approx(dropped, rel=1e-6)
    assert whitened < 0.2 * error(truncated_factors(weight, rank, None))

    # With outputs weighted (D: how much each output moves the loss), the
    # weighted error left is the dropped singular values of D W S.
    scale = torch.rand(48, dtype=torch.float64) * 3 + 0.1

    def weighted_error(pair):
        first, second = pair
        return (scale * (x @ (second @ first).t() - x @ weight.t())).pow(2).sum().item()

    weighted = weighted_error(truncated_factors(weight, rank, factor, scale))
    assert weighted == pytest.approx(whitened_spectrum(weight, factor, scale)[rank:].sum().item())
    assert weighted < 0.9 * weighted_error(truncated_factors(weight, rank, factor))


def test_singular_statistics_are_damped_not_refused():
    torch.manual_seed(0)
    x = torch.randn(8, 32)  # fewer tokens than inputs: X^T X is singular
    x[:, 5] = 0  # and one input is never used
    gram = x.t() @ x
    with pytest.raises(torch.linalg.LinAlgError):
        torch.linalg.cholesky(gram.double())
    factor = whitening_factor(gram)
    assert torch.isfinite(factor).all() and torch.equal(factor, factor.tril())
    first, second = truncated_factors(torch.randn(16, 32), 4, factor)
    assert first.shape == (4, 32) and second.shape == (16, 4)
    assert torch.isfinite(first).all() and torch.isfinite(second).all()


def test_ranks_meet_the_target_exactly_and_go_where_the_energy_is():
    shapes = [
        Shape("q", 64, 64),
        Shape("k", 32, 64),
        Shape("up", 128, 64),
        Shape("down", 64, 128),
        Shape("odd", 37, 53),  # a cost off the others' lattice
        Shape("one", 1, 64),  # no rank saves anything: left whole, outside the budget
    ]
    factorable = shapes[:5]
    total = sum(s.whole for s in factorable)
    g = math.gcd(*(s.step for s in factorable))
    generator = torch.Generator().manual_seed(0)
    for reduction in (0.05, 0.2, 0.5, 0.8):
        energies = {
            s.name: torch.rand(min(s.out_features, s.in_features), generator=generator)
            .sort(descending=True)
            .values
            for s in shapes
        }
        for given in (energies, None):  # None: the estimate's shares, by shapes alone
            ranks = share_ranks(shapes, given, reduction)
            assert "one" not in ranks
            assert kept_weights(factorable, ranks) == int((1 - reduction) * total) // g * g
            for s in factorable:
                assert ranks[s.name] == WHOLE or 1 <= ranks[s.name] <= s.top

    # A layer whose singular values carry a thousand times the others' keeps
    # all of them (whole); the flat ones give up their ranks first.
    energies = {s.name: torch.ones(min(s.out_features, s.in_features)) for s in factorable}
    energies["up"] = energies["up"] * 1000
    ranks = share_ranks(factorable, energies, 0.2)
    assert ranks["up"] == WHOLE
    assert ranks["q"] != WHOLE and ranks["down"] != WHOLE


def test_statistics_are_the_inputs_grams_and_the_loss_gradients(folders):
    loaded = load_model(str(folders("llama")), device="cpu")
    model = loaded.model
    flags = [p.requires_grad for p in model.parameters()]
    calibration = text_windows(loaded.tokenizer, 2)
    layers = block_linears(model)
    grams, fisher = collect_loss_statistics(model, layers, calibration, CancelToken())
    assert [p.requires_grad for p in model.parameters()] == flags  # restored

    # The grams: GPTQ's Hessians (2/n X^T X) halved.
    from core.passes.calibration import collect_input_hessians

    hessians = collect_input_hessians(model, layers, calibration, CancelToken())
    for name, _ in layers:
        assert torch.allclose(grams[name], hessians[name] / 2, rtol=1e-4, atol=1e-6)

    # The output Fisher of one layer, from autograd directly.
    name, linear = layers[-1]
    outputs = []
    handle = linear.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    squares = torch.zeros(linear.out_features)
    for ids in calibration:
        outputs.clear()
        logits = model(input_ids=ids.view(1, -1)).logits[0, :-1]
        loss = torch.nn.functional.cross_entropy(logits, ids[1:])
        (grad,) = torch.autograd.grad(loss, outputs[0])
        squares += grad.reshape(-1, linear.out_features).pow(2).sum(0)
    handle.remove()
    tokens = sum(ids.numel() for ids in calibration)
    assert torch.allclose(fisher[name], squares / tokens, rtol=1e-4, atol=1e-12)
    assert (output_scale(fisher[name]) > 0).all()


def test_the_bert_classifier_is_factored_on_its_own_predictions(tmp_path):
    from core.passes.calibration import classifier_calibration
    from tests.tiny_models import save_tiny_classifier

    loaded = load_model(str(save_tiny_classifier(tmp_path / "bert")), device="cpu")
    calibration = classifier_calibration(loaded.tokenizer, count=8)
    recipe = Recipe((R["low_rank_aware"](0.3),))
    model = apply_recipe(loaded, recipe, calibration).loaded.model
    assert any(isinstance(m, nn.Sequential) for m in model.modules())
    assert estimate_size(loaded.model, recipe).total_bytes == measure_size(model).total_bytes


def test_refusals_in_one_line(folders):
    loaded = load_model(str(folders("llama")), device="cpu")
    with pytest.raises(RecipeError, match="needs calibration") as caught:
        apply_recipe(loaded, Recipe((R["low_rank_aware"](),)))
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="low_rank_aware needs calibration"):
        R["low_rank_aware"]().apply(loaded.model, PassContext())
    # Plain SVD needs no calibration text.
    assert not Recipe((R["low_rank_aware"](0.2, "svd"),)).needs_calibration()
    apply_recipe(loaded, Recipe((R["low_rank_aware"](0.2, "svd"),)))
    with pytest.raises(OptionError, match="param_reduction must be between"):
        R["low_rank_aware"](0.95)
    with pytest.raises(OptionError, match="method must be one of"):
        R["low_rank_aware"](0.2, "asvd")

    class NoLinears(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = nn.Identity()

    with pytest.raises(ValueError, match="no linear layers") as caught:
        R["low_rank_aware"](0.2, "svd").apply(NoLinears(), PassContext())
    assert "\n" not in str(caught.value)

    class NoEmbeddings(nn.Module):  # linears, but no way in for token ids
        def __init__(self):
            super().__init__()
            self.mlp = nn.Linear(16, 16)

    with pytest.raises(UnsupportedModelError, match="no input embeddings") as caught:
        R["low_rank_aware"](0.2).apply(NoEmbeddings(), PassContext([torch.arange(8)]))
    assert "\n" not in str(caught.value)
    plain = R["low_rank_aware"](0.5, "svd").apply(NoEmbeddings(), PassContext())
    assert isinstance(plain.mlp, nn.Sequential)  # plain SVD needs no text


def test_the_target_is_met_when_only_whole_layers_have_the_step_it_needs():
    # GPT-NeoX's shapes at hidden 64: q/k/v fused (4 g a rank), dense (2 g),
    # MLPs (3 g). With the MLPs' energy high they are left whole, the other
    # moves change the total by even multiples of g only; an odd gap is met
    # by factoring a whole MLP again below its top rank.
    layer = [Shape("qkv", 192, 64), Shape("dense", 64, 64), Shape("up", 128, 64)]
    shapes = [Shape(f"{s.name}{i}", s.out_features, s.in_features) for i in range(2) for s in layer]
    shapes += [Shape(f"down{i}", 64, 128) for i in range(2)]
    total, g = sum(s.whole for s in shapes), math.gcd(*(s.step for s in shapes))
    decay = torch.linspace(1, 0.01, 64)
    energies = {s.name: decay * (1000 if s.name.startswith(("up", "down")) else 1) for s in shapes}
    for reduction in [r / 100 for r in range(5, 60)]:
        ranks = share_ranks(shapes, energies, reduction)
        assert kept_weights(shapes, ranks) == int((1 - reduction) * total) // g * g
