"""Every linear layer of a block is seen by the passes, whatever the
family calls it: OPT keeps its MLP as the layer's own ``fc1``/``fc2`` (no
``mlp`` module), which int8/int4 left in float under the run's name. A
block weight under a name no hint knows is refused rather than left."""

from __future__ import annotations

import pytest
from torch import nn

from core.errors import UnsupportedModelError
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes.blocks import decoder_layers
from core.passes.recipe import Recipe, apply_recipe
from core.passes.size_estimate import estimate_size
from tests.tiny_models import save_tiny_model


@pytest.mark.parametrize("config", [R["int8_weight_only"](), R["int4_weight_only"](group_size=32)])
def test_opts_own_fc1_fc2_are_quantised_with_the_attention(tmp_path, config):
    loaded = load_model(str(save_tiny_model("opt", tmp_path / "opt")), device="cpu")
    recipe = Recipe((config,))
    model = apply_recipe(loaded, recipe).loaded.model
    left = [
        name
        for layer in decoder_layers(model)
        for name, module in layer.named_modules()
        if isinstance(module, nn.Linear)
    ]
    assert left == []
    assert estimate_size(loaded.model, recipe).total_bytes == measure_size(model).total_bytes


def test_a_block_linear_under_an_unknown_name_is_refused_not_left(tmp_path):
    loaded = load_model(str(save_tiny_model("llama", tmp_path / "llama")), device="cpu")
    for layer in decoder_layers(loaded.model):
        layer.mixer_gate = nn.Linear(64, 64)  # neither attention nor MLP by name
    with pytest.raises(UnsupportedModelError, match=r"mixer_gate\.weight") as refused:
        apply_recipe(loaded, Recipe((R["int8_weight_only"](),)))
    assert "\n" not in str(refused.value)
