"""The int8 head and embedding pass: one int8 copy for a tied matrix (its
size counted once, the estimate equal to it), logits close to the
original's on every family it accepts, a one-line refusal where it cannot be
exact, and an export that loads back sharing the copy again."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from core.errors import WorkbenchError
from core.jobs.write_export import run_export
from core.models.loading import load_model
from core.models.quantized_embedding import Int8Embedding
from core.models.quantized_linear import Int8WeightOnlyLinear
from core.models.size import measure_size
from core.passes import REGISTRY
from core.passes.recipe import Recipe, apply_recipe
from core.passes.size_estimate import estimate_size
from tests.tiny_models import save_tiny_model, tiny_config

IDS = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 11]])


def _recipe(targets="head+embeddings") -> Recipe:
    return Recipe((REGISTRY["int8_head"](targets),))


def _close(a, b) -> float:
    """Max |logit difference| relative to the original's largest logit."""
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.mark.parametrize("kind", ["gpt2", "llama", "qwen2", "phi3", "mistral"])
def test_tied_matrix_becomes_one_int8_copy(kind, tmp_path):
    original = load_model(str(save_tiny_model(kind, tmp_path / kind)), device="cpu")
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    built = apply_recipe(original, _recipe())
    model = built.loaded.model
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    assert isinstance(head, Int8WeightOnlyLinear) and isinstance(embedding, Int8Embedding)
    assert head.weight_int8 is embedding.weight_int8 and head.scales is embedding.scales
    assert any("one int8 copy" in note for note in built.notes)
    size, full = measure_size(model), measure_size(original.model)
    vocab, dim = head.weight_int8.shape
    # the float matrix (4 bytes a weight, stored once) became 1 byte a weight + a bf16 scale a row
    assert full.total_bytes - size.total_bytes == 4 * vocab * dim - (vocab * dim + 2 * vocab)
    assert estimate_size(original.model, _recipe()).total_bytes == size.total_bytes
    with torch.no_grad():
        assert _close(original.model(IDS).logits, model(IDS).logits) < 0.05
    after = original.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the original untouched


def test_head_alone_of_a_tied_model_is_a_second_copy_and_sizes_say_so(tmp_path):
    original = load_model(str(save_tiny_model("llama", tmp_path / "m")), device="cpu")
    built = apply_recipe(original, _recipe("head"))
    model = built.loaded.model
    assert type(model.get_input_embeddings()) is torch.nn.Embedding
    assert isinstance(model.get_output_embeddings(), Int8WeightOnlyLinear)
    vocab, dim = model.get_output_embeddings().weight_int8.shape
    grown = measure_size(model).total_bytes - measure_size(original.model).total_bytes
    assert grown == vocab * dim + 2 * vocab  # the float matrix stays; the int8 copy is added
    assert (
        estimate_size(original.model, _recipe("head")).total_bytes
        == measure_size(model).total_bytes
    )
    assert any("two copies" in note for note in built.notes)


def test_untied_head_and_embedding_each_get_their_own_int8(tmp_path):
    config = tiny_config("llama")
    config.tie_word_embeddings = False
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "untied")
    save_tiny_model("llama", tmp_path / "tok")  # the tokenizer beside it
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "untied" / name).write_bytes((tmp_path / "tok" / name).read_bytes())
    original = load_model(str(tmp_path / "untied"), device="cpu")
    model = apply_recipe(original, _recipe()).loaded.model
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    assert head.weight_int8 is not embedding.weight_int8
    assert estimate_size(original.model, _recipe()).total_bytes == measure_size(model).total_bytes


@pytest.mark.parametrize("kind", ["gemma2", "gemma3"])
def test_a_scaled_embedding_is_refused_in_one_line_and_the_head_alone_works(kind, tmp_path):
    original = load_model(str(save_tiny_model(kind, tmp_path / kind)), device="cpu")
    with pytest.raises((ValueError, WorkbenchError), match="targets=head") as refused:
        apply_recipe(original, _recipe())
    assert "\n" not in str(refused.value)
    model = apply_recipe(original, _recipe("head")).loaded.model
    with torch.no_grad():
        assert _close(original.model(IDS).logits, model(IDS).logits) < 0.05


def test_a_classifier_has_no_vocabulary_head(tiny_classifier_dir):
    classifier = load_model(str(tiny_classifier_dir), device="cpu")
    with pytest.raises((ValueError, WorkbenchError), match="no linear output head"):
        apply_recipe(classifier, _recipe())


def test_export_loads_back_with_the_copy_shared_again(tiny_llama_dir, tmp_path):
    original = load_model(str(tiny_llama_dir), device="cpu")
    recipe = Recipe((REGISTRY["int4_weight_only"](32, "rtn"), REGISTRY["int8_head"]()))
    built = apply_recipe(original, recipe)
    list(run_export(original, recipe, tmp_path / "out", ("hf",), compressed=built))
    back = load_model(str(tmp_path / "out"), device="cpu").model
    head, embedding = back.get_output_embeddings(), back.get_input_embeddings()
    assert isinstance(embedding, Int8Embedding) and head.weight_int8 is embedding.weight_int8
    assert measure_size(back).total_bytes == measure_size(built.loaded.model).total_bytes
    with torch.no_grad():
        assert torch.equal(back(IDS).logits, built.loaded.model(IDS).logits)
