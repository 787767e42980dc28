"""Dropping whole layers needs nothing of a layer's insides, so it runs on
every family whose blocks sit in one list, not only those whose MLP layout
the other structured passes know: OPT, BLOOM, GPT-J, Phi, the MoE families,
SmolLM3 (layers without RoPE listed per layer) and Gemma 3 (attention kinds
listed per layer). The pruned model computes what the original computes
with that layer skipped, and its export reloads to the same logits."""

from __future__ import annotations

import re

import pytest
import torch

from core.jobs.write_export import ExportResult, run_export
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.blocks import decoder_layers
from core.passes.recipe import Recipe, apply_recipe
from tests.test_passes import calibration_for
from tests.tiny_models import save_tiny_model

KINDS = ("opt", "bloom", "gptj", "phi", "mixtral", "qwen2_moe", "smollm3", "gemma3")


def _skipping(model, index):
    """Hook layer ``index`` of ``model`` to hand back its input: the layer skipped."""

    def hook(_module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return decoder_layers(model)[index].register_forward_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("kind", KINDS)
def test_a_dropped_layer_is_the_layer_skipped_and_the_export_reloads(kind, tmp_path):
    overrides = {"mlp_only_layers": [1]} if kind == "qwen2_moe" else {}  # indices renumbered
    loaded = load_model(str(save_tiny_model(kind, tmp_path / kind, **overrides)), device="cpu")
    layers = len(decoder_layers(loaded.model))
    recipe = Recipe((R["prune_layers"](1),))
    compressed = apply_recipe(loaded, recipe, calibration_for(loaded))
    pruned = compressed.loaded.model
    (dropped,) = map(
        int,
        re.search(r"dropped layers \[(\d+)\]", str(compressed.loaded.description.notes)).groups(),
    )
    assert len(decoder_layers(pruned)) == layers - 1
    config = pruned.config
    for name in ("layer_types", "no_rope_layers"):
        if getattr(loaded.model.config, name, None):
            expected = [v for i, v in enumerate(getattr(loaded.model.config, name)) if i != dropped]
            assert getattr(config, name) == expected
    ids = calibration_for(loaded)[1].view(1, -1)
    handle = _skipping(loaded.model, dropped)
    with torch.no_grad():
        skipped = loaded.model(input_ids=ids, use_cache=False).logits
        handle.remove()
        ours = pruned(input_ids=ids, use_cache=False).logits
    assert (ours - skipped).abs().max() <= 1e-5
    events = list(run_export(loaded, recipe, tmp_path / "out", ("hf",), compressed=compressed))
    assert isinstance(events[-1], ExportResult)  # its reload check passed
    back = load_model(str(tmp_path / "out"), device="cpu")
    with torch.no_grad():
        assert (back.model(input_ids=ids).logits - pruned(input_ids=ids).logits).abs().max() <= 1e-5
