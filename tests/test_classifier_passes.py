"""Every compression pass on a tiny random BERT sentiment classifier (the
demo classifier's architecture): round trip, the original untouched, bytes
as the accounting says, the instant estimate equal to the measured size."""

import pytest
import torch

from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY
from core.passes.calibration import classifier_calibration
from core.passes.recipe import Recipe, apply_recipe, pass_from_dict
from core.passes.size_estimate import estimate_size
from tests.test_passes import ALL_PASSES

R = REGISTRY


@pytest.fixture(scope="module")
def classifier(tiny_classifier_dir):
    return load_model(str(tiny_classifier_dir), device="cpu")


@pytest.fixture(scope="module")
def calibration(classifier):
    return classifier_calibration(classifier.tokenizer, 8)


def logits(model, tokenizer):
    inputs = tokenizer(
        ["a fine film", "a dull and tired film, sadly"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**inputs).logits.float()


def test_loads_as_a_sequence_classifier(classifier):
    assert classifier.task == "sequence-classification" and classifier.is_classifier
    assert classifier.description.labels == ["negative", "positive"]
    by = measure_size(classifier.model).by_component
    assert by["other"] == 0 and min(by["embeddings"], by["attention"], by["mlp"], by["head"]) > 0


@pytest.mark.parametrize("config", ALL_PASSES, ids=lambda c: c.summary())
def test_every_pass_applies_to_the_classifier(classifier, calibration, config):
    assert pass_from_dict(config.to_dict()) == config
    before = {k: v.clone() for k, v in classifier.model.state_dict().items()}
    before_bytes = measure_size(classifier.model).total_bytes
    reference = logits(classifier.model, classifier.tokenizer)

    compressed = apply_recipe(classifier, Recipe((config,)), calibration)

    after = classifier.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # original bit-identical
    out = logits(compressed.loaded.model, classifier.tokenizer)
    assert out.shape == reference.shape == (2, 2) and torch.isfinite(out).all()
    assert compressed.loaded.task == "sequence-classification"
    measured = measure_size(compressed.loaded.model)
    assert compressed.loaded.description.bytes_in_memory == measured.total_bytes
    if config.name == "prune_unstructured":
        assert measured.total_bytes == before_bytes
    else:
        assert measured.total_bytes < before_bytes
    estimate = estimate_size(classifier.model, Recipe((config,)))
    assert estimate.by_component == measured.by_component


@pytest.mark.parametrize(
    "passes",
    [
        (R["prune_mlp"](0.25), R["low_rank"](0.3), R["int4_weight_only"](64)),
        (R["prune_layers"](1), R["prune_heads"](0.5), R["int8_dynamic"]()),
    ],
    ids=["mlp+lowrank+int4", "layers+heads+w8a8"],
)
def test_estimate_equals_measured_for_chains(classifier, calibration, passes):
    recipe = Recipe(passes)
    measured = measure_size(apply_recipe(classifier, recipe, calibration).loaded.model)
    assert estimate_size(classifier.model, recipe).by_component == measured.by_component


def test_structured_pruning_cuts_bert_shapes(classifier, calibration):
    heads = apply_recipe(classifier, Recipe((R["prune_heads"](0.5),)), calibration).loaded.model
    attention = heads.bert.encoder.layer[0].attention
    assert attention.self.query.out_features == attention.self.value.out_features == 32
    assert attention.output.dense.in_features == 32 and heads.config.num_attention_heads == 2
    mlp = apply_recipe(classifier, Recipe((R["prune_mlp"](0.5),)), calibration).loaded.model
    assert mlp.bert.encoder.layer[1].intermediate.dense.out_features == 64
    assert mlp.bert.encoder.layer[1].output.dense.in_features == 64
    layers = apply_recipe(classifier, Recipe((R["prune_layers"](1),)), calibration).loaded.model
    assert len(layers.bert.encoder.layer) == layers.config.num_hidden_layers == 1


def test_int8_dynamic_says_smoothquant_cannot_fold_into_bert(classifier, calibration):
    # BERT normalises after the residual add: no exact place for the scales.
    compressed = apply_recipe(classifier, Recipe((R["int8_dynamic"](0.7),)), calibration)
    assert any("SmoothQuant skipped" in note for note in compressed.notes)


def test_calibration_is_train_split_reviews(classifier):
    from core.data.sentiment import sentiment_split

    test_texts = {text for text, _ in sentiment_split("test")}
    train = sentiment_split("train")[:4]
    ids = classifier_calibration(classifier.tokenizer, 4)
    assert len(ids) == 4 and all(t not in test_texts for t, _ in train)
    assert (
        ids[0].tolist()
        == classifier.tokenizer(train[0].text, truncation=True, max_length=64).input_ids
    )
