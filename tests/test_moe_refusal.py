"""A mixture of experts keeps its expert weights as 3-D tensors, not linear
layers: a pass over block linears would quantize, factor or prune only the
attention and leave most of the model in float under an "int4" name. It is
refused in one line instead; a scope that names only linear parts (the
attention) still runs, and changes exactly those."""

from __future__ import annotations

import pytest
import torch

from core.errors import UnsupportedModelError
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe, apply_recipe
from tests.test_passes import calibration_for
from tests.tiny_models import MOE_CONFIGS, save_tiny_model


@pytest.fixture(scope="module", params=sorted(MOE_CONFIGS))
def moe(request, tmp_path_factory):
    folder = save_tiny_model(request.param, tmp_path_factory.mktemp(request.param))
    return load_model(str(folder), device="cpu")


@pytest.mark.parametrize(
    "config",
    [
        R["int8_weight_only"](),
        R["int4_weight_only"](),
        R["int8_dynamic"](smooth_alpha=0.0),
        R["low_rank"](),
        R["low_rank_aware"](),
        R["prune_unstructured"](),
        R["prune_wanda"](),
        R["int8_weight_only"](parts="gate_up"),  # the experts' own part name
    ],
    ids=lambda c: c.name + (f"[{c.parts}]" if getattr(c, "parts", "") else ""),
)
def test_passes_over_linears_refuse_expert_tensors_in_one_line(moe, config):
    with pytest.raises(UnsupportedModelError) as refused:
        apply_recipe(moe, Recipe((config,)), calibration_for(moe))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{config.name}: ") and "experts.gate_up_proj" in message


def test_an_attention_scope_still_quantizes_the_attention_alone(moe):
    built = apply_recipe(moe, Recipe((R["int8_weight_only"](parts="q,k,v,o"),)))
    before = dict(moe.model.named_parameters())
    after = dict(built.loaded.model.named_parameters())
    experts = [name for name in before if ".experts." in name]
    assert experts and all(torch.equal(before[n], after[n]) for n in experts)
    changed = [name for name in before if name not in after]
    assert changed and all(".self_attn." in name for name in changed)


def test_prune_heads_runs_on_a_mixture(moe):
    """Head pruning changes the attention alone (Llama's layout here), so the
    experts do not stop it: heads go, the experts stay as they were."""
    config = moe.model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    built = apply_recipe(moe, Recipe((R["prune_heads"](0.5),)), calibration_for(moe))
    pruned = built.loaded.model
    assert pruned.config.num_attention_heads < heads
    assert pruned.config.num_key_value_heads == kv_heads  # a group keeps its key/value head
    q_proj = pruned.model.layers[0].self_attn.q_proj
    assert q_proj.out_features == pruned.config.num_attention_heads * pruned.config.head_dim
    before = dict(moe.model.named_parameters())
    after = dict(pruned.named_parameters())
    experts = [name for name in before if ".experts." in name]
    assert experts and all(torch.equal(before[n], after[n]) for n in experts)
    ids = torch.arange(12).view(1, -1)
    with torch.no_grad():
        assert torch.isfinite(pruned(input_ids=ids).logits).all()
