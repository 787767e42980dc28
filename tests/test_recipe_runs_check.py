"""A built model that does not run is refused in one line before anything is
measured: Mamba's forward reads ``lm_head.weight.dtype``, and an int8 head
has no float weight (it failed at the first benchmarked token with a
traceback). A recipe that does run is not touched by the check."""

from __future__ import annotations

import pytest
import torch

from core.errors import UnsupportedModelError
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe, apply_recipe
from tests.tiny_models import tiny_tokenizer


@pytest.fixture(scope="module")
def mamba(tmp_path_factory):
    from transformers import AutoModelForCausalLM, MambaConfig

    tokenizer = tiny_tokenizer()
    config = MambaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, state_size=8
    )
    folder = tmp_path_factory.mktemp("mamba") / "model"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder), device="cpu")


def test_a_head_the_familys_forward_reaches_into_is_refused_in_one_line(mamba):
    with pytest.raises(UnsupportedModelError, match="does not run") as refused:
        apply_recipe(mamba, Recipe((R["int8_head"](),)))
    message = str(refused.value)
    assert message.startswith("int8_head(") and "\n" not in message
    assert "AttributeError" in message and "MambaForCausalLM" in message


def test_a_recipe_that_runs_passes_the_check(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    compressed = apply_recipe(loaded, Recipe((R["int8_head"](),)))
    with torch.no_grad():
        assert compressed.loaded.model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[1] == 3
