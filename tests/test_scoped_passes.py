"""A quantization limited to some layers and parts: only those modules
change, several quantizations share a recipe on disjoint layers, the size
estimate follows, an export loads back identical, and scopes the model
cannot have are refused in one line."""

import json

import pytest
import torch
from torch import nn

from core.jobs.write_export import run_export
from core.models.loading import load_model
from core.models.quantized_linear import Int4WeightOnlyLinear, Int8WeightOnlyLinear
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe, RecipeError, apply_recipe, validate
from core.passes.scope import layer_of, part_of
from core.passes.size_estimate import estimate_size

IDS = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 11]])


def _kinds(model) -> dict[str, str]:
    """Block linear path -> its module type name."""
    return {
        name: type(module).__name__
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, Int8WeightOnlyLinear, Int4WeightOnlyLinear))
        and part_of(name) is not None
    }


def test_int8_on_one_layer_and_int4_on_the_other(tiny_llama_dir, tmp_path):
    original = load_model(str(tiny_llama_dir), device="cpu")
    recipe = Recipe(
        (R["int8_weight_only"](layers="0"), R["int4_weight_only"](32, "rtn", layers="1"))
    )
    built = apply_recipe(original, recipe)
    kinds = _kinds(built.loaded.model)
    assert kinds and all(
        kind == ("Int8WeightOnlyLinear" if layer_of(name) == 0 else "Int4WeightOnlyLinear")
        for name, kind in kinds.items()
    )
    assert (
        estimate_size(original.model, recipe).total_bytes
        == measure_size(built.loaded.model).total_bytes
    )
    assert Recipe.from_json(recipe.to_json()) == recipe  # the scope survives the JSON
    list(run_export(original, recipe, tmp_path / "out", ("hf",), compressed=built))
    back = load_model(str(tmp_path / "out"), device="cpu").model
    with torch.no_grad():
        assert torch.equal(back(IDS).logits, built.loaded.model(IDS).logits)
    assert json.loads((tmp_path / "out" / "recipe.json").read_text())["passes"][0]["layers"] == "0"


@pytest.mark.parametrize(
    "fixture,parts,chosen",
    [("tiny_gpt2_dir", "qkv,down", {"qkv", "down"}), ("tiny_llama_dir", "q,v", {"q", "v"})],
)
def test_parts_choose_modules_by_their_role(fixture, parts, chosen, request):
    original = load_model(str(request.getfixturevalue(fixture)), device="cpu")
    model = apply_recipe(original, Recipe((R["int8_weight_only"](parts=parts),))).loaded.model
    changed = {part_of(n) for n, k in _kinds(model).items() if k == "Int8WeightOnlyLinear"}
    assert changed == chosen


@pytest.mark.parametrize(
    "passes,words",
    [
        ((R["int8_weight_only"](), R["int4_weight_only"](32, "rtn", layers="1")), "own layers"),
        (
            (R["int8_weight_only"](layers="0-1"), R["int4_weight_only"](32, "rtn", layers="1")),
            "own layers",
        ),
        ((R["int4_weight_only"](128, "awq", parts="q"),), "not parts"),
    ],
)
def test_overlapping_or_impossible_scopes_are_refused(passes, words):
    with pytest.raises(RecipeError, match=words):
        validate(Recipe(passes))


def test_a_layer_the_model_lacks_is_refused_in_one_line(tiny_llama_dir):
    original = load_model(str(tiny_llama_dir), device="cpu")
    layers = original.model.config.num_hidden_layers
    with pytest.raises(
        ValueError, match=f"layer {layers} is not in this {layers}-layer model"
    ) as e:
        apply_recipe(original, Recipe((R["int8_weight_only"](layers=f"0,{layers}"),)))
    assert "\n" not in str(e.value)


def test_a_later_pass_on_a_missing_layer_is_refused_before_any_pass_runs(
    tiny_llama_dir, monkeypatch
):
    """Passes on layers 0 and 1 of a 2-layer model, then one on layer 2: the
    refusal names layer 2 and comes before the first pass is applied."""
    from core.passes.base import PassConfig

    original = load_model(str(tiny_llama_dir), device="cpu")
    layers = original.model.config.num_hidden_layers
    applied = []
    real = type(R["int8_weight_only"]()).apply
    monkeypatch.setattr(
        type(R["int8_weight_only"]()), "apply", lambda *a: applied.append(1) or real(*a)
    )
    passes = tuple(R["int8_weight_only"](layers=str(i)) for i in range(layers + 1))
    with pytest.raises(ValueError, match=f"layer {layers} is not in this {layers}-layer model"):
        apply_recipe(original, Recipe(passes))
    assert not applied and issubclass(type(passes[0]), PassConfig)


def test_the_cli_reads_a_scope_with_commas():
    from core.cli.compress import parse_pass

    item = parse_pass("int4_weight_only:group_size=64,layers=2-5,9,parts=q,k,method=rtn")
    assert item["layers"] == "2-5,9" and item["parts"] == "q,k" and item["method"] == "rtn"


@pytest.mark.parametrize("text", ["١", "0-٣", "２"])
def test_layer_indices_are_ascii_digits(text):
    """int() reads Arabic-Indic and full-width digits; a scope stored with them
    named layers no reader of the recipe would see."""
    from core.passes.scope import parse_layers

    with pytest.raises(ValueError, match="is not an index"):
        parse_layers(text)
    assert parse_layers("0-3, 5") == frozenset({0, 1, 2, 3, 5})
