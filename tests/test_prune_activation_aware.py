"""Wanda and SparseGPT (core/passes/prune_wanda.py, prune_sparsegpt.py) on
tiny models of several families: the sparsity they promise (per row for
Wanda, per 128-column block for SparseGPT, 2 of every 4 for 2:4), the
original untouched, sizes unchanged as estimated, calibration taken block by
block from the already-pruned blocks, refusals in one line, and lower
output error than magnitude pruning where activations have outlier
channels, as real language models do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.models.linear_layers import block_linears
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes import PassContext
from core.passes.blocks import decoder_layers
from core.passes.prune_sparsegpt import sparsegpt_prune
from core.passes.prune_wanda import wanda_prune
from core.passes.recipe import Recipe, RecipeError, apply_recipe, validate
from core.passes.size_estimate import estimate_size
from tests.tiny_models import save_tiny_model

FAMILIES = ("gpt2", "llama", "qwen2", "phi3", "gemma2")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("activation-pruning")
    built = {}

    def folder(family):
        if family not in built:
            built[family] = save_tiny_model(family, root / family)
        return built[family]

    return folder


def text_windows(tokenizer, count: int, skip: int = 0) -> list[torch.Tensor]:
    """64-token windows of the standard library's help texts."""
    from pydoc_data.topics import topics

    ids = tokenizer(" ".join(list(topics.values())[:8]), return_tensors="pt").input_ids[0]
    return [ids[i * 64 : (i + 1) * 64] for i in range(skip, skip + count)]


def pruned_linears(loaded, config, calibration=None):
    calibration = calibration or text_windows(loaded.tokenizer, 4)
    compressed = apply_recipe(loaded, Recipe((config,)), calibration)
    return compressed, block_linears(compressed.loaded.model)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_row_and_group_loses_exactly_its_share(folders, family):
    loaded = load_model(str(folders(family)), device="cpu")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}

    _, wanda = pruned_linears(loaded, R["prune_wanda"](0.3))
    for name, linear in wanda:
        zeros = (linear.weight == 0).sum(dim=1)
        assert (zeros == round(0.3 * linear.in_features)).all(), name  # per row, Wanda's group

    compressed, sparsegpt = pruned_linears(loaded, R["prune_sparsegpt"](0.3))
    for name, linear in sparsegpt:  # the mask is chosen per block of 128 columns
        for block in linear.weight.split(128, dim=1):
            assert (block == 0).sum() == round(0.3 * block.numel()), name
    assert any("stores zeros dense" in n for n in compressed.notes)

    for config in (R["prune_wanda"](0.5, "2:4"), R["prune_sparsegpt"](0.5, "2:4")):
        compressed, linears = pruned_linears(loaded, config)
        for name, linear in linears:
            groups = (linear.weight == 0).reshape(linear.out_features, -1, 4).sum(dim=2)
            assert (groups == 2).all(), f"{config.name} {name}"
        note = next(n for n in compressed.notes if "2:4" in n)
        assert "accuracy preview" in note and "no CPU speed gain" in note and "GPU-only" in note

    after = loaded.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the original untouched


def test_the_bert_classifier_is_pruned_block_by_block_too(tmp_path):
    from core.passes.calibration import classifier_calibration
    from tests.tiny_models import save_tiny_classifier

    loaded = load_model(str(save_tiny_classifier(tmp_path / "bert")), device="cpu")
    calibration = classifier_calibration(loaded.tokenizer, count=8)
    _, wanda = pruned_linears(loaded, R["prune_wanda"](0.3), calibration)
    for name, linear in wanda:
        assert ((linear.weight == 0).sum(dim=1) == round(0.3 * linear.in_features)).all(), name
    _, sparsegpt = pruned_linears(loaded, R["prune_sparsegpt"](0.5, "2:4"), calibration)
    for name, linear in sparsegpt:
        groups = (linear.weight == 0).reshape(linear.out_features, -1, 4).sum(dim=2)
        assert (groups == 2).all(), name


@pytest.mark.parametrize("name", ["prune_wanda", "prune_sparsegpt"])
def test_sizes_are_unchanged_as_estimated_and_zero_sparsity_changes_nothing(folders, name):
    loaded = load_model(str(folders("llama")), device="cpu")
    recipe = Recipe((R[name](0.5),))
    estimate = estimate_size(loaded.model, recipe)
    compressed, _ = pruned_linears(loaded, R[name](0.5))
    measured = measure_size(compressed.loaded.model)
    assert measured == measure_size(loaded.model)
    assert estimate.total_bytes == measured.total_bytes
    assert estimate.by_component == measured.by_component
    assert compressed.loaded.description.bytes_in_memory == measured.total_bytes

    untouched, _ = pruned_linears(loaded, R[name](0.0))
    original = loaded.model.state_dict()
    assert all(torch.equal(v, original[k]) for k, v in untouched.loaded.model.state_dict().items())


def _column_sq_norms(model, linear, calibration) -> torch.Tensor:
    total = torch.zeros(linear.in_features)

    def hook(_module, inputs, _output):
        total.add_(inputs[0].reshape(-1, linear.in_features).pow(2).sum(0))

    handle = linear.register_forward_hook(hook)
    with torch.no_grad():
        for ids in calibration:
            model(input_ids=ids.view(1, -1))
    handle.remove()
    return total


def test_each_block_is_calibrated_on_the_already_pruned_blocks(folders):
    loaded = load_model(str(folders("llama")), device="cpu")
    calibration = text_windows(loaded.tokenizer, 4)
    pruned = apply_recipe(loaded, Recipe((R["prune_wanda"](0.5),)), calibration).loaded.model
    for index in (0, 1):
        original_q = decoder_layers(loaded.model)[index].self_attn.q_proj
        pruned_q = decoder_layers(pruned)[index].self_attn.q_proj
        # q_proj's inputs in the pruned model come from the pruned blocks before it.
        norms = _column_sq_norms(pruned, pruned_q, calibration)
        assert torch.equal(
            wanda_prune(original_q.weight, norms, 0.5, "unstructured"), pruned_q.weight
        )
    # The test can tell: block 1's mask from the original model's inputs differs.
    original_q = decoder_layers(loaded.model)[1].self_attn.q_proj
    norms = _column_sq_norms(loaded.model, original_q, calibration)
    assert not torch.equal(
        wanda_prune(original_q.weight, norms, 0.5, "unstructured"), pruned_q.weight
    )


@torch.no_grad()
def _with_outlier_channels(loaded) -> None:
    """Four channels of every norm's output 10x larger: the few large
    activation channels real language models have, which tiny random models
    lack (and without which input norms are nearly uniform)."""
    generator = torch.Generator().manual_seed(0)
    for name, param in loaded.model.named_parameters():
        if ("norm" in name or "ln_" in name) and param.dim() == 1 and "bias" not in name:
            param[torch.randperm(param.numel(), generator=generator)[:4]] *= 10


@torch.no_grad()
def _kl_to_original(original, model, windows) -> float:
    total = 0.0
    for ids in windows:
        p = original(input_ids=ids.view(1, -1)).logits.log_softmax(-1)
        q = model(input_ids=ids.view(1, -1)).logits.log_softmax(-1)
        total += (p.exp() * (p - q)).sum(-1).mean().item()
    return total / len(windows)


@pytest.mark.parametrize("family", FAMILIES)
def test_wanda_and_sparsegpt_beat_magnitude_pruning(folders, family):
    loaded = load_model(str(folders(family)), device="cpu")
    _with_outlier_channels(loaded)
    calibration = text_windows(loaded.tokenizer, 4)
    held_out = text_windows(loaded.tokenizer, 4, skip=4)  # never seen by calibration
    kl = {}
    for name in ("prune_unstructured", "prune_wanda", "prune_sparsegpt"):
        model = apply_recipe(loaded, Recipe((R[name](0.5),)), calibration).loaded.model
        kl[name] = _kl_to_original(loaded.model, model, held_out)
    assert kl["prune_wanda"] < kl["prune_unstructured"], kl
    assert kl["prune_sparsegpt"] < kl["prune_unstructured"], kl


def test_one_layer_output_error_magnitude_then_wanda_then_sparsegpt():
    torch.manual_seed(0)
    weight = torch.randn(64, 128)
    # Correlated inputs with uneven column scales, as real activations have.
    x = (torch.randn(512, 16) @ torch.randn(16, 128) + 0.1 * torch.randn(512, 128)) * (
        torch.rand(128) * 4
    )

    def error(w):
        return (x @ w.t() - x @ weight.t()).pow(2).mean().item()

    magnitude = weight.masked_fill(weight.abs() < weight.abs().median(dim=1, keepdim=True)[0], 0)
    wanda = wanda_prune(weight, x.pow(2).sum(0), 0.5, "unstructured")
    sparsegpt = sparsegpt_prune(weight, x.t() @ x, 0.5, "unstructured")
    assert (sparsegpt == 0).float().mean() == 0.5
    assert error(sparsegpt) < 0.5 * error(wanda) < 0.5 * error(magnitude)
    for pattern in ("2:4", "4:8"):  # the Hessian update helps under N:M too
        assert error(sparsegpt_prune(weight, x.t() @ x, 0.5, pattern)) < error(
            wanda_prune(weight, x.pow(2).sum(0), 0.5, pattern)
        )


def test_missing_calibration_and_impossible_options_are_refused_in_one_line(folders):
    loaded = load_model(str(folders("llama")), device="cpu")
    for name in ("prune_wanda", "prune_sparsegpt"):
        with pytest.raises(RecipeError, match="needs calibration") as caught:
            apply_recipe(loaded, Recipe((R[name](),)))
        assert "\n" not in str(caught.value)
        with pytest.raises(ValueError, match=f"{name} needs calibration"):
            R[name]().apply(loaded.model, PassContext())
        with pytest.raises(RecipeError, match="2 of every 4 weights") as caught:
            validate(Recipe((R[name](0.7, "2:4"),)))
        assert "\n" not in str(caught.value)
        with pytest.raises(RecipeError, match=f"low_rank after {name}"):
            validate(Recipe((R[name](), R["low_rank"]())))


class _Config:
    num_hidden_layers = 2


class _Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.mlp = nn.Linear(width, width)

    def forward(self, hidden):
        return hidden + self.mlp(hidden)


class _ScalesBetweenBlocks(nn.Module):
    """A model that doubles the hidden states between its blocks."""

    def __init__(self, width=8):
        super().__init__()
        self.config = _Config()
        self.embed_tokens = nn.Embedding(16, width)
        self.layers = nn.ModuleList([_Block(width), _Block(width)])

    def forward(self, input_ids, use_cache=False):
        hidden = self.embed_tokens(input_ids)
        for block in self.layers:
            hidden = 2 * block(hidden)
        return hidden


@pytest.mark.parametrize("name", ["prune_wanda", "prune_sparsegpt"])
def test_models_it_cannot_calibrate_block_by_block_are_refused(name):
    calibration = [torch.arange(8)]
    context = PassContext(calibration)
    with pytest.raises(UnsupportedModelError, match="between its blocks") as caught:
        R[name]().apply(_ScalesBetweenBlocks(), context)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="divisible by 8"):
        R[name](0.5, "4:8").apply(_ScalesBetweenBlocks(width=12), context)
    no_linears = _ScalesBetweenBlocks()
    no_linears.layers = nn.ModuleList([nn.Identity(), nn.Identity()])
    with pytest.raises(ValueError, match="no linear layers"):
        R[name]().apply(no_linears, context)
