"""Every compression pass on tiny GPT-2 and Llama models: config round trip,
refusals, the original untouched, bytes changing as the accounting says,
and the compressed model still running."""

import pytest
import torch
from torch import nn

from core.models.loading import load_model
from core.models.quantized_linear import Int4WeightOnlyLinear, Int8WeightOnlyLinear
from core.models.size import measure_size
from core.passes import REGISTRY
from core.passes.recipe import Recipe, RecipeError, apply_recipe, pass_from_dict, validate

R = REGISTRY
ALL_PASSES = [
    R["cast"]("bfloat16"),
    R["int8_weight_only"](),
    R["int8_dynamic"](),
    R["int4_weight_only"](32, "rtn"),
    R["int4_weight_only"](64, "gptq"),
    R["prune_unstructured"](0.5, "global"),
    R["prune_mlp"](0.25),
    R["prune_heads"](0.5),
    R["prune_layers"](1),
    R["low_rank"](0.25),
]


@pytest.fixture
def loaded(tiny_dir):
    return load_model(str(tiny_dir), device="cpu")


def calibration_for(loaded):
    from pydoc_data.topics import topics

    ids = loaded.tokenizer(" ".join(list(topics.values())[:5]), return_tensors="pt").input_ids[0]
    return [ids[i * 64 : (i + 1) * 64] for i in range(4)]


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.mark.parametrize("config", ALL_PASSES, ids=lambda c: c.summary())
def test_pass_round_trips_and_leaves_original_untouched(loaded, config):
    assert pass_from_dict(config.to_dict()) == config
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    before_size = measure_size(loaded.model)
    ids = calibration_for(loaded)[0].view(1, -1)
    reference = logits(loaded.model, ids)

    compressed = apply_recipe(loaded, Recipe((config,)), calibration_for(loaded))

    after = loaded.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    out = logits(compressed.loaded.model, ids)
    assert out.shape == reference.shape and torch.isfinite(out).all()
    size = measure_size(compressed.loaded.model)
    assert compressed.loaded.description.bytes_in_memory == size.total_bytes
    if config.name == "prune_unstructured":
        assert size.total_bytes == before_size.total_bytes  # zeros stored dense
        assert any("dense" in n for n in compressed.notes)
    else:
        assert size.total_bytes < before_size.total_bytes


def test_quantized_layers_store_low_precision(loaded):
    int8 = apply_recipe(loaded, Recipe((R["int8_weight_only"](),))).loaded.model
    int4 = apply_recipe(loaded, Recipe((R["int4_weight_only"](32),))).loaded.model
    q8 = [m for m in int8.modules() if isinstance(m, Int8WeightOnlyLinear)]
    q4 = [m for m in int4.modules() if isinstance(m, Int4WeightOnlyLinear)]
    assert q8 and all(m.weight_int8.dtype == torch.int8 for m in q8)
    assert q4 and all(m.weight_int4pack.dtype == torch.uint8 for m in q4)
    # Two weights per byte: the packed tensor holds half as many bytes as weights.
    m = q4[0]
    assert m.weight_int4pack.numel() * 2 == m.weight_int4pack.shape[0] * m.padded_in_features
    size = measure_size(int4)
    assert size.by_component["mlp"] < measure_size(loaded.model).by_component["mlp"] / 5


def test_int8_weight_only_is_close_and_int4_matches_its_dequantised_weights():
    torch.manual_seed(0)
    linear = nn.Linear(128, 64)
    x = torch.randn(3, 128)
    q8 = Int8WeightOnlyLinear.from_linear(linear)
    assert torch.allclose(q8(x), linear(x), atol=0.05)
    from core.models.quantized_linear import quantize_groupwise_int4

    q, scale, lo = quantize_groupwise_int4(linear.weight.detach(), 32)
    dequant = (q.view(64, 4, 32) * scale[..., None] + lo[..., None]).view(64, 128)
    expected = x.bfloat16().float() @ dequant.t() + linear.bias
    assert torch.allclose(Int4WeightOnlyLinear.from_linear(linear, 32)(x), expected, atol=0.05)


def test_gptq_beats_round_to_nearest_on_layer_output():
    from core.models.quantized_linear import quantize_groupwise_int4
    from core.passes.gptq import gptq_quantize

    torch.manual_seed(0)
    weight = torch.randn(64, 128)
    # Correlated inputs with uneven scales, as real activations have.
    x = torch.randn(512, 16) @ torch.randn(16, 128) + 0.1 * torch.randn(512, 128)
    hessian = 2 * x.t() @ x / len(x)

    def error(q, scale, lo):
        w = (q.view(64, 4, 32) * scale[..., None] + lo[..., None]).view(64, 128)
        return (x @ w.t() - x @ weight.t()).pow(2).mean()

    assert error(*gptq_quantize(weight, hessian, 32)) < 0.7 * error(
        *quantize_groupwise_int4(weight, 32)
    )


def test_structured_pruning_shrinks_shapes_and_config(loaded):
    calibration = calibration_for(loaded)
    config = loaded.model.config
    mlp = apply_recipe(loaded, Recipe((R["prune_mlp"](0.5),)), calibration).loaded.model
    width = (
        getattr(config, "intermediate_size", None)
        or getattr(config, "n_inner", None)
        or (4 * config.hidden_size)
    )
    new_width = getattr(mlp.config, "intermediate_size", None) or mlp.config.n_inner
    assert new_width == width // 2
    layers = apply_recipe(loaded, Recipe((R["prune_layers"](1),)), calibration).loaded.model
    n = getattr(config, "num_hidden_layers", None) or config.n_layer
    assert (getattr(layers.config, "num_hidden_layers", None) or layers.config.n_layer) == n - 1


def test_pruned_layers_model_generates_with_its_kv_cache(loaded):
    from core.runtime.torch_runner import generate_steps

    compressed = apply_recipe(loaded, Recipe((R["prune_layers"](1),)), calibration_for(loaded))
    model = compressed.loaded.model
    ids = calibration_for(loaded)[0][:8].view(1, -1)
    steps = [s.token_id for s in generate_steps(model, ids, 6)]
    full = torch.cat([ids, torch.tensor([steps[:-1]])], dim=1)
    assert logits(model, full)[0, ids.shape[1] - 1 :].argmax(-1).tolist() == steps


def test_low_rank_full_rank_is_exact():
    from core.passes.low_rank import factor_rank, factorise

    linear = nn.Linear(64, 256)
    assert factor_rank(256, 64, 0.25) == 16
    assert factor_rank(64, 64, 0.5) is None  # 32 * 128 == 64 * 64: no saving
    x = torch.randn(2, 64)
    assert torch.allclose(factorise(linear, 64)(x), linear(x), atol=1e-4)


def test_recipe_json_round_trip_and_allow_list():
    recipe = Recipe((R["prune_mlp"](0.25), R["int4_weight_only"](64, "gptq")))
    assert Recipe.from_json(recipe.to_json()) == recipe
    with pytest.raises(RecipeError, match="unknown pass"):
        Recipe.from_dict({"format": 1, "passes": [{"pass": "os.system", "version": 1}]})
    with pytest.raises(RecipeError, match="version"):
        Recipe.from_dict({"format": 1, "passes": [{"pass": "low_rank", "version": 99}]})
    with pytest.raises(RecipeError, match="unknown option"):
        Recipe.from_dict({"format": 1, "passes": [{"pass": "low_rank", "version": 1, "x": 1}]})
    with pytest.raises(ValueError):
        R["low_rank"](rank_ratio=2.0)


@pytest.mark.parametrize(
    "passes, reason",
    [
        ((R["int8_weight_only"](), R["int4_weight_only"]()), "two quantizations"),
        ((R["int4_weight_only"](), R["low_rank"]()), "put the quantization last"),
        ((R["prune_mlp"](), R["prune_mlp"](0.5)), "twice"),
        ((R["prune_unstructured"](), R["low_rank"]()), "discard the zeros"),
        # low_rank_aware is a factorisation too (a sweep found it past these rules,
        # then a traceback in the pruning pass or an export that failed at the end)
        ((R["prune_wanda"](), R["low_rank_aware"]()), "discard the zeros"),
        ((R["low_rank_aware"](), R["prune_heads"]()), "cannot cut factored layers"),
        ((R["low_rank_aware"](), R["prune_mlp"]()), "cannot cut factored layers"),
        ((R["low_rank"](), R["low_rank_aware"]()), "both factorise"),
        ((R["low_rank_aware"](), R["low_rank"]()), "both factorise"),
    ],
)
def test_impossible_combinations_are_refused_before_work(passes, reason):
    with pytest.raises(RecipeError, match=reason):
        validate(Recipe(passes))


def test_calibrated_pass_without_calibration_is_refused(loaded):
    with pytest.raises(RecipeError, match="calibration"):
        apply_recipe(loaded, Recipe((R["prune_mlp"](),)))


def test_unsupported_layers_are_refused_with_a_reason():
    class NoLinears(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(10, 4)

    with pytest.raises(ValueError, match="no linear layers"):
        R["int8_weight_only"]().apply(NoLinears(), __import__("core.passes").passes.PassContext())


def test_smoothquant_keeps_the_float_function(loaded):
    import copy

    from core.models.linear_layers import convert_conv1d_to_linear
    from core.passes.smooth_quant import smooth
    from core.progress import CancelToken

    model = copy.deepcopy(loaded.model)
    convert_conv1d_to_linear(model)
    ids = calibration_for(loaded)[1].view(1, -1)
    before = logits(model, ids)
    assert smooth(model, calibration_for(loaded), 0.7, CancelToken()) > 0
    assert torch.allclose(logits(model, ids), before, atol=1e-3)


ESTIMATED = ALL_PASSES + [
    (R["prune_mlp"](0.25), R["low_rank"](0.3), R["int4_weight_only"](64)),
    (R["prune_layers"](1), R["prune_heads"](0.5), R["int8_weight_only"]()),
    (R["prune_unstructured"](0.3), R["cast"]("float16")),
]


@pytest.mark.parametrize(
    "passes",
    ESTIMATED,
    ids=lambda p: p.summary() if hasattr(p, "summary") else "+".join(c.name for c in p),
)
def test_instant_estimate_equals_measured_size(loaded, passes):
    from core.passes.size_estimate import estimate_size

    recipe = Recipe(passes if isinstance(passes, tuple) else (passes,))
    estimate = estimate_size(loaded.model, recipe)
    measured = measure_size(apply_recipe(loaded, recipe, calibration_for(loaded)).loaded.model)
    assert estimate.by_component == measured.by_component
    assert estimate.total_bytes == measured.total_bytes


def test_int4_handles_rows_not_a_multiple_of_16():
    torch.manual_seed(0)
    linear = nn.Linear(64, 20)
    x = torch.randn(2, 64)
    q4 = Int4WeightOnlyLinear.from_linear(linear, 32)
    assert q4(x).shape == (2, 20)
    assert torch.allclose(q4(x), linear(x), atol=0.1)


def test_a_key_given_twice_in_a_recipe_is_refused_not_the_last_taken():
    text = (
        '{"format": 1, "passes": [{"pass": "prune_mlp", "version": 1, '
        '"fraction": 0.1, "fraction": 0.5}]}'
    )
    with pytest.raises(RecipeError, match="'fraction' twice"):
        Recipe.from_json(text)
    assert Recipe.from_json(text.replace('"fraction": 0.1, ', "")).passes[0].fraction == 0.5
