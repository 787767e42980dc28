"""No silent breakage across families: every transform meant to keep the
function (SmoothQuant's fold alone, structured pruning at 0% or of parts that
contribute nothing, low-rank at the weights' full rank, export then reload)
keeps the outputs within 1e-4 on tiny random models of nine families whose
norms, MLPs or attention differ; what cannot be exact is refused in one line
or left out with a note."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.jobs.write_export import ExportResult, run_export
from core.models.linear_layers import block_linears, convert_conv1d_to_linear
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes import smooth_quant
from core.passes.blocks import decoder_layers, mlp_parts
from core.passes.low_rank import factor_rank
from core.passes.prune_heads import _attention, _output_projection, head_counts
from core.passes.recipe import Recipe, apply_recipe
from core.passes.size_estimate import estimate_size
from core.progress import CancelToken
from tests.test_passes import calibration_for
from tests.tiny_models import CAUSAL_KINDS, save_tiny_classifier, save_tiny_model

FAMILIES = (*CAUSAL_KINDS, "bert")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    built = {}

    def folder(family):
        if family not in built:
            target = root / family
            built[family] = (
                save_tiny_classifier(target)
                if family == "bert"
                else save_tiny_model(family, target)
            )
        return built[family]

    return folder


@pytest.fixture(params=FAMILIES)
def loaded(request, folders):
    return load_model(str(folders(request.param)), device="cpu")


@torch.no_grad()
def outputs(model, ids) -> torch.Tensor:
    """The logits; for the classifier (a few small logits) its last hidden
    states too, so a change anywhere in the encoder shows."""
    out = model(input_ids=ids, output_hidden_states=True)
    if out.logits.dim() == 2:
        return torch.cat([out.logits.flatten(), out.hidden_states[-1].flatten()])
    return out.logits


def assert_same_function(model, reference_model, ids):
    difference = (outputs(model, ids) - outputs(reference_model, ids)).abs().max()
    assert difference <= TOLERANCE, f"outputs differ by {difference:.2e}"


def window(loaded):
    return calibration_for(loaded)[1].view(1, -1)


# SmoothQuant's fold alone --------------------------------------------------


def test_smoothquant_fold_alone_keeps_the_function(loaded):
    model = copy.deepcopy(loaded.model)
    convert_conv1d_to_linear(model)
    reference = copy.deepcopy(model)
    notes = []
    smoothed = smooth_quant.smooth(model, calibration_for(loaded), 0.5, CancelToken(), notes)
    assert_same_function(model, reference, window(loaded))
    layers = len(decoder_layers(model))
    if loaded.model.config.model_type == "bert":
        # Post-norm: its LayerNorms feed the residual stream too; nothing folds.
        assert smoothed == 0 and "left unsmoothed" in notes[0]
    elif loaded.model.config.model_type == "gpt2":
        assert smoothed == 2 * layers and not notes  # ln_1 -> c_attn, ln_2 -> c_fc
    else:  # attention inputs, MLP inputs, up rows -> down_proj: all of them
        assert smoothed == 3 * layers and not notes
    changed = [
        name
        for name, param in model.named_parameters()
        if not torch.equal(param, reference.get_parameter(name))
    ]
    assert bool(changed) == (smoothed > 0)  # it did fold something, exactly


def test_smoothquant_folds_into_the_norm_that_feeds_the_mlp(folders):
    # Gemma 2/3's MLP reads pre_feedforward_layernorm, and its norms scale by 1 + w.
    loaded = load_model(str(folders("gemma2")), device="cpu")
    groups, _ = smooth_quant.trace_groups(
        loaded.model, decoder_layers(loaded.model), window(loaded)[0], []
    )
    layer = decoder_layers(loaded.model)[0]
    by_producer = {g.producer: g for g in groups[0]}
    assert layer.post_attention_layernorm not in by_producer  # it scales the attention output
    mlp_group = by_producer[layer.pre_feedforward_layernorm]
    assert mlp_group.consumers == [layer.mlp.gate_proj, layer.mlp.up_proj]
    assert mlp_group.kind == "one_plus"
    llama = load_model(str(folders("llama")), device="cpu").model
    assert smooth_quant.norm_kind(decoder_layers(llama)[0].input_layernorm) == "scale"


def test_a_fold_that_would_change_a_layer_is_restored_and_said(folders, monkeypatch):
    # Pretend Gemma's (1 + w) norms multiply by w: those folds would be wrong;
    # the check on the traced layer must catch them and put the weights back.
    loaded = load_model(str(folders("gemma2")), device="cpu")
    monkeypatch.setattr(smooth_quant, "norm_kind", lambda norm: "scale")
    model = copy.deepcopy(loaded.model)
    notes = []
    smoothed = smooth_quant.smooth(model, calibration_for(loaded), 0.5, CancelToken(), notes)
    layers = len(decoder_layers(model))
    assert smoothed == layers  # only up_proj -> down_proj folds
    assert "input_layernorm" in notes[0] and "\n" not in notes[0]
    for layer, original in zip(decoder_layers(model), decoder_layers(loaded.model), strict=True):
        assert torch.equal(layer.input_layernorm.weight, original.input_layernorm.weight)
    assert_same_function(model, loaded.model, window(loaded))


# Structured pruning and low rank that keep every weight that matters --------


def test_zero_pruning_and_full_rank_keep_the_function(loaded):
    # Each pass at the setting that removes nothing (low_rank leaves a layer
    # whole when factors would not be smaller, so 0.95 factorises none here).
    nothing_removed = Recipe(
        (R["prune_heads"](0.0), R["prune_mlp"](0.0), R["prune_layers"](0), R["low_rank"](0.95))
    )
    compressed = apply_recipe(loaded, nothing_removed, calibration_for(loaded))
    assert_same_function(compressed.loaded.model, loaded.model, window(loaded))


@torch.no_grad()
def silence_heads(model, heads=(0, 2)) -> None:
    """Zero the output projection's columns of some query heads (one per
    key/value group): those heads contribute nothing, so they go first."""
    _, _, head_dim, _, _ = head_counts(0.0, model.config)
    for layer in decoder_layers(model):
        projection = _output_projection(_attention(layer))
        for head in heads:
            projection.weight[:, head * head_dim : (head + 1) * head_dim] = 0


@torch.no_grad()
def silence_neurons(model) -> None:
    for layer in decoder_layers(model):
        mlp_parts(layer)[1].weight[:, ::4] = 0  # a quarter of each MLP's neurons


@torch.no_grad()
def silence_layer(model, index=0) -> None:
    layer = decoder_layers(model)[index]
    for linear in (_output_projection(_attention(layer)), mlp_parts(layer)[1]):
        linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()


SILENCED = {
    "heads": (silence_heads, R["prune_heads"](0.5)),
    "neurons": (silence_neurons, R["prune_mlp"](0.25)),
    "layer": (silence_layer, R["prune_layers"](1)),
}


# BERT normalises after the residual add, so a silenced BERT layer is not an
# identity: its layer case is not a function-keeping transform.
SILENCED_CASES = [
    (f, part) for f in FAMILIES for part in SILENCED if (f, part) != ("bert", "layer")
]


@pytest.mark.parametrize(("family", "part"), SILENCED_CASES)
def test_pruning_parts_that_contribute_nothing_keeps_the_function(folders, family, part):
    loaded = load_model(str(folders(family)), device="cpu")
    silence, config = SILENCED[part]
    convert_conv1d_to_linear(loaded.model)
    silence(loaded.model)
    before = sum(p.numel() for p in loaded.model.parameters())
    compressed = apply_recipe(loaded, Recipe((config,)), calibration_for(loaded))
    model = compressed.loaded.model
    assert sum(p.numel() for p in model.parameters()) < before  # it did cut
    assert_same_function(model, loaded.model, window(loaded))


@torch.no_grad()
def test_low_rank_at_the_weights_rank_keeps_the_function(loaded):
    ratio = 0.3
    convert_conv1d_to_linear(loaded.model)
    for _, linear in block_linears(loaded.model):  # make each weight exactly rank r
        rank = factor_rank(linear.out_features, linear.in_features, ratio)
        if rank is not None:
            u, s, vh = torch.linalg.svd(linear.weight, full_matrices=False)
            linear.weight.copy_(u[:, :rank] @ torch.diag(s[:rank]) @ vh[:rank])
    compressed = apply_recipe(loaded, Recipe((R["low_rank"](ratio),)))
    model = compressed.loaded.model
    assert any(isinstance(m, nn.Sequential) for m in model.modules())  # it did factorise
    assert_same_function(model, loaded.model, window(loaded))


# Export, then load the folder back ----------------------------------------


@pytest.mark.parametrize(
    "passes",
    [
        (),
        (
            R["prune_heads"](0.5),
            R["prune_mlp"](0.25),
            R["prune_layers"](1),
            R["int8_weight_only"](),
        ),
    ],
    ids=["original", "pruned-int8"],
)
def test_export_then_reload_keeps_the_function(loaded, passes, tmp_path):
    recipe = Recipe(passes)
    compressed = apply_recipe(loaded, recipe, calibration_for(loaded))
    # The instant estimate knows each family's (fused) projections too.
    estimate, measured = estimate_size(loaded.model, recipe), measure_size(compressed.loaded.model)
    assert (estimate.total_bytes, estimate.by_component) == (
        measured.total_bytes,
        measured.by_component,
    )
    events = list(run_export(loaded, recipe, tmp_path / "out", ("hf",), compressed=compressed))
    assert isinstance(events[-1], ExportResult)
    back = load_model(str(tmp_path / "out"), device="cpu")
    assert type(back.model) is type(loaded.model)
    assert_same_function(back.model, compressed.loaded.model, window(loaded))


# Layouts a pass does not know are refused in one line -----------------------


class UnknownMlp(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.w_in, self.w_out = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        return self.w_out(torch.relu(self.w_in(x)))


class UnknownAttention(nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("a refused pass must not run the model")


@pytest.mark.parametrize(
    ("swap", "config", "words"),
    [
        ("mlp", R["prune_mlp"](0.25), "MLP layout"),
        ("self_attn", R["prune_heads"](0.5), "attention of"),
    ],
)
def test_an_unknown_layout_is_refused_in_one_line(folders, swap, config, words):
    loaded = load_model(str(folders("llama")), device="cpu")
    for layer in decoder_layers(loaded.model):
        setattr(layer, swap, UnknownMlp(64) if swap == "mlp" else UnknownAttention())
    with pytest.raises(UnsupportedModelError, match=words) as error:
        apply_recipe(loaded, Recipe((config,)), calibration_for(loaded))
    assert "\n" not in str(error.value)
    assert str(error.value).startswith(f"{config.name}: ")  # which pass refused


def test_a_head_fraction_that_rounds_to_no_head_is_refused_before_any_work(loaded):
    """It was measured and stored as "prune_heads(fraction=0.25)" with nothing
    removed (sweep ten): now the config alone refuses it, so the window greys
    Run, and the build refuses it before reading calibration text."""
    from core.jobs.experiment import build_compressed

    heads, kv_heads, _, _, _ = head_counts(0.0, loaded.model.config)
    group = heads // kv_heads
    too_small = 0.4 / (group if group > 1 else kv_heads)  # rounds to zero heads
    config = R["prune_heads"](too_small)
    refusal = config.model_refusal(loaded.model.config)
    assert refusal and refusal.startswith("prune_heads:") and "no head removed" in refusal
    with pytest.raises(UnsupportedModelError, match="no head removed"):
        build_compressed(loaded, Recipe((config,)))
    assert R["prune_heads"](0.0).model_refusal(loaded.model.config) is None  # asks nothing
    enough = R["prune_heads"](1 / (group if group > 1 else kv_heads))
    assert enough.model_refusal(loaded.model.config) is None
