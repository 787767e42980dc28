"""One config: a compressed model and every module inside it share one config
object, as transformers builds them, so a pass that changes it (dropping
layers updates ``layer_types``) changes it for all. Checked on a tiny Gemma 3
that mixes sliding-window and full attention: dropping a layer must give
exactly the model built directly at the smaller size from the kept weights."""

import copy
from dataclasses import replace

import pytest
import torch

from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe, apply_recipe
from tests.tiny_models import save_tiny_model

WINDOW = 40  # longer than the sliding window (8): the mask of each layer matters


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    return load_model(str(save_tiny_model("gemma3", tmp_path_factory.mktemp("gemma3"))), "cpu")


def calibration(loaded, count=2):
    torch.manual_seed(1)
    vocab = loaded.model.config.vocab_size
    return [torch.randint(0, vocab, (WINDOW,)) for _ in range(count)]


def configs_inside(model) -> list:
    return [m.config for m in model.modules() if hasattr(m, "config")]


def test_the_copy_shares_one_config_like_the_original(gemma3):
    compressed = apply_recipe(gemma3, Recipe((R["prune_mlp"](0.25),)), calibration(gemma3))
    model = compressed.loaded.model
    assert model.config is not gemma3.model.config  # a copy: the original is never changed
    inside = configs_inside(model)
    assert len(inside) > len(model.model.layers)  # model, inner model, attention modules...
    assert all(c is model.config for c in inside)
    assert all(layer.self_attn.config is model.config for layer in model.model.layers)


@torch.no_grad()
def direct_model(original, kept: list[int]):
    """The same family built at len(kept) layers, with the kept layers' types
    and weights: what dropping the other layers must be equal to."""
    config = copy.deepcopy(original.config)
    config.num_hidden_layers = len(kept)
    config.layer_types = [original.config.layer_types[i] for i in kept]
    model = type(original)(config).eval()
    state = {}
    for name, tensor in original.state_dict().items():
        if name.startswith("model.layers."):
            index, rest = name[len("model.layers.") :].split(".", 1)
            if int(index) not in kept:
                continue
            name = f"model.layers.{kept.index(int(index))}.{rest}"
        state[name] = tensor
    model.load_state_dict(state, strict=True)
    return model


@torch.no_grad()
def silence_layer(model, index: int) -> None:
    """Zero the layer's attention and MLP outputs: its Block Influence is 0,
    so prune_layers drops it first (a known choice for the test)."""
    layer = model.model.layers[index]
    layer.self_attn.o_proj.weight.zero_()
    layer.mlp.down_proj.weight.zero_()


@pytest.mark.parametrize("dropped", [0, 1])
def test_dropping_a_layer_equals_the_model_built_at_that_size(gemma3, dropped):
    original = gemma3.model
    types = original.config.layer_types
    assert "sliding_attention" in types and "full_attention" in types
    loaded = replace(gemma3, model=copy.deepcopy(original))
    silence_layer(loaded.model, dropped)
    compressed = apply_recipe(loaded, Recipe((R["prune_layers"](1),)), calibration(loaded))
    assert f"dropped layers [{dropped}]" in " ".join(compressed.notes)
    model = compressed.loaded.model
    kept = [i for i in range(len(types)) if i != dropped]
    # The kept types shift: with the old list the wrong layers would slide.
    assert [types[i] for i in kept] != types[: len(kept)]

    assert all(c is model.config for c in configs_inside(model))
    assert model.config.num_hidden_layers == len(kept)
    assert model.config.layer_types == [types[i] for i in kept]
    for new_index, layer in enumerate(model.model.layers):
        assert layer.self_attn.layer_idx == new_index
        sliding = model.config.layer_types[new_index] == "sliding_attention"
        assert layer.self_attn.is_sliding == sliding

    direct = direct_model(loaded.model, kept)
    ids = calibration(loaded, 3)[2].view(1, -1)
    with torch.no_grad():
        got = model(input_ids=ids).logits
        want = direct(input_ids=ids).logits
        assert (got - want).abs().max() <= 1e-5
        # The dropped layer did nothing, so the function is the original's too.
        assert (got - loaded.model(input_ids=ids).logits).abs().max() <= 1e-4

        # Decoding with the cache (built from the config's layer types) agrees.
        prefix, last = ids[:, :-1], ids[:, -1:]
        cache = model(input_ids=prefix, use_cache=True).cache
        step = model(input_ids=last, cache=cache, use_cache=True).logits[:, -1]
        assert (step - want[:, -1]).abs().max() <= 1e-5
