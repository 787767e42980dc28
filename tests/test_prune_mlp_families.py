"""prune_mlp on the two-matrix MLPs of more families (OPT's and XGLM's
fc1/fc2 on the layer itself, Phi's fc1/fc2, GPT-J's and CodeGen's
fc_in/fc_out, GPT-NeoX's and Falcon's dense_h_to_4h, Nemotron's gateless
up/down_proj): neurons that contribute nothing go first and the function is
kept; the new width lands in the family's own config field, so the export
reloads. BLOOM's config has no width field: refused in one line. (prune_heads
on GPT-BigCode's multi-query attention, once refused here, is now
tests/test_prune_heads_families.py's.)"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from core.errors import UnsupportedModelError
from core.jobs.write_export import ExportResult, run_export
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes.blocks import WIDTH_FIELDS, decoder_layers, mlp_parts
from core.passes.recipe import Recipe, apply_recipe
from core.passes.size_estimate import estimate_size
from tests.test_passes import calibration_for
from tests.tiny_models import save_tiny_model, tiny_tokenizer

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
INLINE = {
    "gpt_neox": ("GPTNeoXConfig", {**SMALL, "intermediate_size": 128}),
    "falcon": ("FalconConfig", {**SMALL, "ffn_hidden_size": 128}),
    "codegen": ("CodeGenConfig", {"n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 8}),
    "nemotron": (
        "NemotronConfig",
        {**SMALL, "intermediate_size": 128, "head_dim": 16, "num_key_value_heads": 2},
    ),
    # 4 x hidden, with no field for it: refused
    "bloom": ("BloomConfig", {"hidden_size": 64, "n_layer": 2, "n_head": 4}),
    "xglm": ("XGLMConfig", {"d_model": 64, "ffn_dim": 128, "num_layers": 2, "attention_heads": 4}),
}
KINDS = ("opt", "phi", "gptj", *(kind for kind in INLINE if kind != "bloom"))


def _folder(kind, root):
    if kind not in INLINE:
        return save_tiny_model(kind, root / kind)
    tokenizer = tiny_tokenizer()
    name, fields = INLINE[kind]
    config = getattr(transformers, name)(vocab_size=len(tokenizer), **fields)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # norms away from 1, so a mishandled one shows
        for pname, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in pname or "ln" in pname):
                p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(root / kind)
    tokenizer.save_pretrained(root / kind)
    return root / kind


@pytest.mark.parametrize("kind", KINDS)
def test_silent_neurons_go_first_and_the_export_reloads(kind, tmp_path):
    loaded = load_model(str(_folder(kind, tmp_path)), device="cpu")
    with torch.no_grad():
        for layer in decoder_layers(loaded.model):
            mlp_parts(layer)[1].weight[:, ::4] = 0  # a quarter of the neurons feed nothing
    width = mlp_parts(decoder_layers(loaded.model)[0])[1].in_features
    recipe = Recipe((R["prune_mlp"](0.25),))
    compressed = apply_recipe(loaded, recipe, calibration_for(loaded))
    pruned = compressed.loaded.model
    assert mlp_parts(decoder_layers(pruned)[0])[1].in_features == width * 3 // 4
    estimate, measured = estimate_size(loaded.model, recipe), measure_size(pruned)
    assert (estimate.total_bytes, estimate.by_component) == (
        measured.total_bytes,
        measured.by_component,
    )
    ids = calibration_for(loaded)[1].view(1, -1)
    with torch.no_grad():
        difference = (pruned(input_ids=ids).logits - loaded.model(input_ids=ids).logits).abs().max()
    assert difference <= 1e-4
    events = list(run_export(loaded, recipe, tmp_path / "out", ("hf",), compressed=compressed))
    assert isinstance(events[-1], ExportResult)  # its reload check passed
    back = load_model(str(tmp_path / "out"), device="cpu")
    with torch.no_grad():
        assert (back.model(input_ids=ids).logits - pruned(input_ids=ids).logits).abs().max() == 0
    # every field that held the old width holds the new one (the tiny OPT's
    # config carries intermediate_size beside its ffn_dim): a plain folder
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert width not in [saved.get(field) for field in WIDTH_FIELDS]


def test_a_config_without_a_width_field_is_refused_in_one_line(tmp_path):
    loaded = load_model(str(_folder("bloom", tmp_path)), device="cpu")
    with pytest.raises(UnsupportedModelError, match="no field for the MLP width") as refused:
        apply_recipe(loaded, Recipe((R["prune_mlp"](0.25),)), calibration_for(loaded))
    assert str(refused.value).startswith("prune_mlp: ") and "\n" not in str(refused.value)
