"""Sequence classifiers beyond BERT (a sweep over DeBERTa-v2, MPNet and
ALBERT found a traceback and two misleading refusals): every pass either
works or says why in one line, and the ONNX export refuses a classifier
before it writes anything."""

from __future__ import annotations

import copy

import pytest
import torch

from core.errors import UnsupportedModelError
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.calibration import classifier_calibration
from core.passes.recipe import Recipe, apply_recipe
from tests.tiny_models import tiny_wordpiece_tokenizer

SIZES = dict(  # BERT-style names; DistilBERT takes its own below
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    max_position_embeddings=128, num_labels=2,
)  # fmt: skip


def _save(folder, config_class: str, model_class: str, sizes=SIZES, **extra):
    import transformers

    tokenizer = tiny_wordpiece_tokenizer()
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **sizes, **extra
    )
    torch.manual_seed(0)
    getattr(transformers, model_class)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder), device="cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    return {
        "deberta": _save(
            root / "deberta", "DebertaV2Config", "DebertaV2ForSequenceClassification",
            relative_attention=True, pos_att_type=["c2p", "p2c"],
        ),
        "mpnet": _save(root / "mpnet", "MPNetConfig", "MPNetForSequenceClassification"),
        "albert": _save(
            root / "albert", "AlbertConfig", "AlbertForSequenceClassification", embedding_size=32
        ),
    }  # fmt: skip


def _agreeing_logits(original, compressed) -> None:
    inputs = original.tokenizer(["a fine film", "a dull film"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = original.model(**inputs).logits
        after = compressed.model(**inputs).logits
    assert after.shape == before.shape and torch.isfinite(after).all()


def test_prune_heads_refuses_deberta_in_one_line(models):
    deberta = models["deberta"]
    with pytest.raises(UnsupportedModelError, match="not a layout it knows"):
        apply_recipe(deberta, Recipe((R["prune_heads"](0.5),)), classifier_calibration(
            deberta.tokenizer, 4
        ))  # fmt: skip


def test_mpnet_position_buckets_do_not_stop_the_quantizers(models):
    mpnet = models["mpnet"]
    compressed = apply_recipe(mpnet, Recipe((R["int8_weight_only"](),)))
    _agreeing_logits(mpnet, compressed.loaded)
    table = compressed.loaded.model.mpnet.encoder.relative_attention_bias.weight
    assert table.dtype == torch.float32  # a lookup table, read a row at a time: kept


def test_albert_shared_layers_take_plain_w8a8_with_a_note(models):
    albert = models["albert"]
    calibration = classifier_calibration(albert.tokenizer, 4)
    compressed = apply_recipe(albert, Recipe((R["int8_dynamic"](),)), calibration)
    _agreeing_logits(albert, compressed.loaded)
    assert any("shared between positions" in note for note in compressed.notes)
    assert any("plain W8A8" in note for note in compressed.notes)
    with pytest.raises(ValueError, match="transformer layers of Albert"):
        apply_recipe(albert, Recipe((R["prune_mlp"](0.25),)), calibration)


def test_onnx_export_refuses_a_classifier_before_writing(models, tmp_path):
    from core.jobs.export import ExportRequest, export

    request = ExportRequest(models["mpnet"], tmp_path / "out", ("hf", "onnx"), recipe=Recipe())
    with pytest.raises(UnsupportedModelError, match="ONNX export takes causal language models"):
        list(export(request))
    assert not (tmp_path / "out").exists()


def test_a_classifier_without_a_padding_token_is_refused_in_one_line(tmp_path, capsys):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from core.cli.main import main

    tokenizer = copy.deepcopy(tiny_wordpiece_tokenizer())  # the shared one keeps its pad
    tokenizer.pad_token = None
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=128,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )  # fmt: skip
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    code = main(["eval", "--model", str(tmp_path / "m"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "has no padding token" in err and "Traceback" not in err


def test_prune_mlp_on_distilbert_is_exact_estimated_and_exported(tmp_path):
    """DistilBERT keeps its MLP as ffn.lin1/lin2 and its width in hidden_dim:
    silent neurons go first, the function is kept, and the export reloads."""
    from core.jobs.write_export import run_export
    from core.models.size import measure_size
    from core.passes.size_estimate import estimate_size

    distil = _save(
        tmp_path / "d", "DistilBertConfig", "DistilBertForSequenceClassification",
        sizes={}, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=128,
    )  # fmt: skip
    for layer in distil.model.distilbert.transformer.layer:
        with torch.no_grad():  # neurons 96.. contribute nothing: pruning them is exact
            layer.ffn.lin2.weight[:, 96:] = 0
            layer.ffn.lin1.weight[96:] = 0
            layer.ffn.lin1.bias[96:] = -10
    recipe = Recipe((R["prune_mlp"](0.25),))
    compressed = apply_recipe(distil, recipe, classifier_calibration(distil.tokenizer, 4))
    inputs = distil.tokenizer(["a fine film", "a dull film"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = distil.model(**inputs).logits
        after = compressed.loaded.model(**inputs).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    assert compressed.loaded.model.config.hidden_dim == 96
    measured = measure_size(compressed.loaded.model)
    assert estimate_size(distil.model, recipe).by_component == measured.by_component

    list(run_export(distil, recipe, tmp_path / "out", ("hf",)))
    reloaded = load_model(str(tmp_path / "out"), device="cpu").model
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, after, atol=0, rtol=0)

    # heads cannot go: its config derives the head size from dim / n_heads
    heads = R["prune_heads"](0.5)
    assert "DistilBERT" in heads.model_refusal(distil.model.config)
    with pytest.raises(UnsupportedModelError, match="loaded back"):
        apply_recipe(distil, Recipe((heads,)), classifier_calibration(distil.tokenizer, 4))


def test_int4_groups_wider_than_a_layer_say_so(models):
    mpnet = models["mpnet"]  # 64-wide attention inputs, 128-wide MLP down input
    wide = apply_recipe(mpnet, Recipe((R["int4_weight_only"](128),)))
    assert any("groups of 128 are wider than the inputs" in n and "(64)" in n for n in wide.notes)
    fitting = apply_recipe(mpnet, Recipe((R["int4_weight_only"](32),)))
    assert not any("wider than the inputs" in n for n in fitting.notes)


def test_a_classifier_head_is_counted_as_the_head():
    from core.models.linear_layers import component_of

    assert component_of("pre_classifier.weight") == "head"  # DistilBERT
    assert component_of("head.dense.weight") == "head"  # ModernBERT
    assert component_of("model.layers.0.self_attn.q_proj.weight") == "attention"
