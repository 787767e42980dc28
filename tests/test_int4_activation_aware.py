"""int4 weight-only with activation-aware methods: AWQ (scales folded into
the op before each linear, clipping searched) and GPTQ act-order (static
groups). Tiny models of several families: the original is left as it was,
every block linear ends up as the packed int4 module, AWQ's folds alone keep
the function, and on a model with planted outlier input channels both
methods beat round to nearest on the calibration text. Old recipes (version
1) still load and mean the same."""

from __future__ import annotations

import copy

import pytest
import torch

from core.jobs.write_export import ExportResult, run_export
from core.models.linear_layers import block_linears, convert_conv1d_to_linear
from core.models.loading import load_model
from core.models.quantized_linear import Int4WeightOnlyLinear, quantize_groupwise_int4
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes import awq
from core.passes.awq import clipped_quantize, fold_awq_scales
from core.passes.base import PassContext
from core.passes.blocks import decoder_layers
from core.passes.gptq import gptq_quantize
from core.passes.recipe import Recipe, RecipeError, apply_recipe, pass_from_dict
from core.passes.size_estimate import estimate_size
from tests.test_passes import calibration_for
from tests.tiny_models import save_tiny_model

FAMILIES = ("llama", "qwen2", "phi3", "gemma2", "gpt2")
NEW_METHODS = ("awq", "gptq_act_order")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("int4-families")
    return {family: save_tiny_model(family, root / family) for family in FAMILIES}


@pytest.fixture(params=FAMILIES)
def loaded(request, folders):
    return load_model(str(folders[request.param]), device="cpu")


@torch.no_grad()
def logits(model, windows) -> torch.Tensor:
    return torch.cat([model(input_ids=ids.view(1, -1)).logits.float() for ids in windows])


@pytest.mark.parametrize("method", NEW_METHODS)
def test_every_block_linear_becomes_int4_and_the_original_is_untouched(loaded, method):
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    recipe = Recipe((R["int4_weight_only"](32, method),))
    compressed = apply_recipe(loaded, recipe, calibration_for(loaded))
    model = compressed.loaded.model
    after = loaded.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not block_linears(model)  # none left in float
    packed = [m for m in model.modules() if isinstance(m, Int4WeightOnlyLinear)]
    assert packed and all(m.weight_int4pack.dtype == torch.uint8 for m in packed)
    # Sizes: the estimate from shapes alone is what was built (AWQ changes no shape).
    estimate, measured = estimate_size(loaded.model, recipe), measure_size(model)
    assert estimate.total_bytes == measured.total_bytes
    error = logits(model, calibration_for(loaded)) - logits(loaded.model, calibration_for(loaded))
    assert torch.isfinite(error).all()


@pytest.mark.parametrize("shared", [False, True], ids=["default", "shared-value-scales"])
def test_awq_folds_alone_keep_the_function(loaded, shared, monkeypatch):
    """The scales AWQ searches are folded into norms and producing linears
    (v_proj's rows for o_proj; under grouped-query attention, if asked,
    shared by the query heads of a value head): before any rounding, the
    model computes what it did."""
    monkeypatch.setattr(awq, "SHARED_VALUE_SCALES", shared)
    model = copy.deepcopy(loaded.model)
    convert_conv1d_to_linear(model)
    context = PassContext()
    fold_awq_scales(model, block_linears(model), calibration_for(loaded), 32, context)
    changed = [
        name
        for (name, a), b in zip(model.named_parameters(), loaded.model.parameters(), strict=True)
        if a.shape == b.shape and not torch.equal(a, b)
    ]
    assert changed, "no scale was folded anywhere"
    ids = calibration_for(loaded)[1:2]
    difference = (logits(model, ids) - logits(loaded.model, ids)).abs().max()
    assert difference <= 1e-4, f"folding changed the logits by {difference:.2e}"
    if shared and loaded.model.config.model_type != "gpt2":  # GPT-2's MLP c_proj reads GELU
        # every linear had its fold kept, o_proj under grouped-query attention too
        assert not context.notes


def test_a_family_without_an_exact_fold_is_said_in_a_note(folders):
    """GPT-2's MLP output reads GELU's output: no op before it can absorb a
    scale, so only its clipping is searched, and the note says so."""
    loaded = load_model(str(folders["gpt2"]), device="cpu")
    recipe = Recipe((R["int4_weight_only"](32, "awq"),))
    notes = apply_recipe(loaded, recipe, calibration_for(loaded)).notes
    assert any("mlp.c_proj" in note and "only their clipping" in note for note in notes)


def planted_outliers(folder):
    """The tiny Llama with a few input channels of every linear made 30x
    larger and the weights reading them 30x smaller: the same function, with
    the activation outliers real models have."""
    loaded = load_model(str(folder), device="cpu")
    channels = torch.tensor([3, 17, 40])
    with torch.no_grad():
        for layer in decoder_layers(loaded.model):
            for norm, readers in (
                (layer.input_layernorm, ("q_proj", "k_proj", "v_proj")),
                (layer.post_attention_layernorm, ("gate_proj", "up_proj")),
            ):
                norm.weight[channels] *= 30
                parent = layer.self_attn if readers[0] == "q_proj" else layer.mlp
                for reader in readers:
                    getattr(parent, reader).weight[:, channels] /= 30
    return loaded


def test_on_outlier_channels_awq_and_act_order_beat_round_to_nearest(folders):
    loaded = planted_outliers(folders["llama"])
    calibration = calibration_for(loaded)
    reference = logits(loaded.model, calibration)

    def error(method):
        recipe = Recipe((R["int4_weight_only"](64, method),))
        model = apply_recipe(loaded, recipe, calibration).loaded.model
        return float((logits(model, calibration) - reference).pow(2).mean())

    rtn = error("rtn")
    assert error("awq") <= 0.8 * rtn
    assert error("gptq_act_order") <= 0.8 * rtn


def test_act_order_rounds_on_static_groups_of_consecutive_columns():
    """Group scales and minimums come from the weights in original order,
    whatever order the columns are processed in; the layer's output error
    is below round to nearest's."""
    torch.manual_seed(0)
    weight = torch.randn(32, 128)
    x = torch.randn(512, 16) @ torch.randn(16, 128) + 0.1 * torch.randn(512, 128)
    x[:, [5, 70, 100]] *= 20  # outlier inputs: processed first
    hessian = 2 * x.t() @ x / len(x)
    q, scale, minimum = gptq_quantize(weight, hessian, 32, act_order=True)
    _, rtn_scale, rtn_minimum = quantize_groupwise_int4(weight, 32)
    assert torch.equal(scale, rtn_scale) and torch.equal(minimum, rtn_minimum)
    assert q.min() >= 0 and q.max() <= 15

    def error(q, scale, lo):
        w = (q.view(32, 4, 32) * scale[..., None] + lo[..., None]).view(32, 128)
        return (x @ w.t() - x @ weight.t()).pow(2).mean()

    assert error(q, scale, minimum) < 0.7 * error(*quantize_groupwise_int4(weight, 32))


def test_clipping_search_never_rounds_a_group_worse_than_no_clipping():
    torch.manual_seed(0)
    weight = torch.randn(16, 64)
    weight[:, 7] = 6.0  # a wide outlier column stretches its groups' grids
    x = torch.randn(256, 64)
    hessian = 2 * x.t() @ x / len(x)

    def group_errors(q, scale, lo):
        w = (q.view(16, 2, 32) * scale[..., None] + lo[..., None]).view(16, 64)
        delta = (weight - w).view(16, 2, 32)
        blocks = torch.stack([hessian[i : i + 32, i : i + 32] for i in (0, 32)])
        return (torch.bmm(delta.transpose(0, 1), blocks).transpose(0, 1) * delta).sum(-1)

    clipped = group_errors(*clipped_quantize(weight, hessian, 32, clip=True))
    plain = group_errors(*clipped_quantize(weight, hessian, 32, clip=False))
    assert torch.equal(plain, group_errors(*quantize_groupwise_int4(weight, 32)))
    assert (clipped <= plain + 1e-6).all() and (clipped < plain).any()


def test_awq_export_reloads_the_same_function(folders, tmp_path):
    loaded = load_model(str(folders["llama"]), device="cpu")
    recipe = Recipe((R["int4_weight_only"](32, "awq"),))
    compressed = apply_recipe(loaded, recipe, calibration_for(loaded))
    events = list(run_export(loaded, recipe, tmp_path / "out", ("hf",), compressed=compressed))
    assert isinstance(events[-1], ExportResult)
    back = load_model(str(tmp_path / "out"), device="cpu")
    ids = calibration_for(loaded)[1:2]
    difference = (logits(back.model, ids) - logits(compressed.loaded.model, ids)).abs().max()
    assert difference <= 1e-4


# Recipes --------------------------------------------------------------------


def test_version_1_recipes_still_load_and_mean_the_same():
    old = {"pass": "int4_weight_only", "version": 1, "group_size": 64, "method": "gptq"}
    config = pass_from_dict(old)
    assert config == R["int4_weight_only"](64, "gptq")
    assert config.to_dict() == old | {"version": 2}
    assert pass_from_dict({"pass": "int4_weight_only", "version": 1}) == R["int4_weight_only"]()
    assert Recipe.from_json(
        '{"format": 1, "passes": [{"pass": "int4_weight_only", "version": 1, "method": "rtn"}]}'
    ).passes == (R["int4_weight_only"](128, "rtn"),)


@pytest.mark.parametrize(
    "item, words",
    [
        ({"version": 1, "method": "awq"}, "version 1 has method rtn or gptq, got 'awq'"),
        ({"version": 3}, "version 3 is not supported (this build reads 1, 2)"),
        ({"version": 2, "method": "nf4"}, "must be one of rtn, gptq, gptq_act_order, awq"),
    ],
)
def test_recipes_no_version_could_have_written_are_refused(item, words):
    with pytest.raises(RecipeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        pass_from_dict({"pass": "int4_weight_only"} | item)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_new_methods_need_calibration_text(folders, method):
    loaded = load_model(str(folders["llama"]), device="cpu")
    config = R["int4_weight_only"](64, method)
    assert config.needs_calibration
    with pytest.raises(RecipeError, match="needs calibration text"):
        apply_recipe(loaded, Recipe((config,)))
