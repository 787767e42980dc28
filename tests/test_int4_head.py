"""int8_head with bits=4: the head an int4 group-wise linear, the token
embedding an Int4Embedding that dequantizes only the rows it gathers; a
tied matrix is one int4 copy read by both (measured once, the estimate
equal to it), the head alone of a tied model a second copy; refusals in one
line; exports load back sharing the copy again; version-1 recipes load."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from core.errors import WorkbenchError
from core.jobs.write_export import run_export
from core.models.int4_packing import pack_int4, unpack_int4
from core.models.int4_rows import gather_rows, row_fields
from core.models.loading import load_model
from core.models.quantized_embedding import Int4Embedding
from core.models.quantized_linear import Int4WeightOnlyLinear
from core.models.size import measure_size
from core.passes import REGISTRY
from core.passes.recipe import Recipe, RecipeError, apply_recipe, pass_from_dict
from core.passes.size_estimate import estimate_size
from tests.tiny_models import save_tiny_model, tiny_config

IDS = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 11]])


def _recipe(targets="head+embeddings", group_size=32) -> Recipe:
    return Recipe((REGISTRY["int8_head"](targets, bits=4, group_size=group_size),))


def _close(a, b) -> float:
    """Max |logit difference| relative to the original's largest logit."""
    return ((a - b).abs().max() / a.abs().max()).item()


def _dequantized(head: Int4WeightOnlyLinear) -> torch.Tensor:
    """The head's weight from torch's packing, read without int4_rows."""
    sz = head.scales_and_zeros.float()  # [groups, rows, 2]
    rows = sz.shape[1]
    q = unpack_int4(head.weight_int4pack, rows, head.padded_in_features).float()
    columns = torch.arange(head.padded_in_features) // head.group_size
    w = (q - 8) * sz[columns, :, 0].t() + sz[columns, :, 1].t()
    return w[: head.out_features, : head.in_features]


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2", "mistral"])
def test_tied_matrix_becomes_one_int4_copy(kind, tmp_path):
    original = load_model(str(save_tiny_model(kind, tmp_path / kind)), device="cpu")
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    built = apply_recipe(original, _recipe())
    model = built.loaded.model
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    assert isinstance(head, Int4WeightOnlyLinear) and isinstance(embedding, Int4Embedding)
    assert head.weight_int4pack is embedding.weight_int4pack
    assert head.scales_and_zeros is embedding.scales_and_zeros
    assert any("one int4 g32 copy" in note for note in built.notes)
    # the embedding reads exactly the head's values out of the shared packing
    ids = torch.arange(head.out_features)
    assert torch.equal(embedding(ids), _dequantized(head))
    size, full = measure_size(model), measure_size(original.model)
    vocab, dim = head.out_features, head.in_features
    rows, padded = -(-vocab // 16) * 16, -(-dim // 32) * 32
    int4_bytes = rows * (padded // 2 + padded // 32 * 4)  # 4 bits a weight, bf16 scale+zero
    assert full.total_bytes - size.total_bytes == 4 * vocab * dim - int4_bytes
    assert estimate_size(original.model, _recipe()).total_bytes == size.total_bytes
    with torch.no_grad():
        assert _close(original.model(IDS).logits, model(IDS).logits) < 0.15
    after = original.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the original untouched


def test_head_alone_of_a_tied_model_is_a_second_copy_and_sizes_say_so(tiny_llama_dir):
    original = load_model(str(tiny_llama_dir), device="cpu")
    built = apply_recipe(original, _recipe("head", 128))
    model = built.loaded.model
    assert type(model.get_input_embeddings()) is torch.nn.Embedding
    head = model.get_output_embeddings()
    assert isinstance(head, Int4WeightOnlyLinear) and head.group_size == 128
    grown = measure_size(model).total_bytes - measure_size(original.model).total_bytes
    assert grown == head.weight_int4pack.nbytes + head.scales_and_zeros.nbytes > 0
    assert (
        estimate_size(original.model, _recipe("head", 128)).total_bytes
        == measure_size(model).total_bytes
    )
    assert any("two copies" in note for note in built.notes)


def test_untied_head_and_embedding_each_get_their_own_int4(tmp_path):
    config = tiny_config("llama")
    config.tie_word_embeddings = False
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "untied")
    save_tiny_model("llama", tmp_path / "tok")  # the tokenizer beside it
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "untied" / name).write_bytes((tmp_path / "tok" / name).read_bytes())
    original = load_model(str(tmp_path / "untied"), device="cpu")
    model = apply_recipe(original, _recipe(group_size=64)).loaded.model
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    assert isinstance(embedding, Int4Embedding)
    assert head.weight_int4pack is not embedding.weight_int4pack
    ids = torch.tensor([0, 7, config.vocab_size - 1])
    float_rows = original.model.get_input_embeddings()(ids)
    assert (embedding(ids) - float_rows).abs().max() < 0.5 * float_rows.abs().max()
    estimate = estimate_size(original.model, _recipe(group_size=64)).total_bytes
    assert estimate == measure_size(model).total_bytes


@pytest.mark.parametrize("kind", ["gemma2", "gemma3"])
def test_a_scaled_embedding_is_refused_in_one_line_and_the_head_alone_works(kind, tmp_path):
    original = load_model(str(save_tiny_model(kind, tmp_path / kind)), device="cpu")
    with pytest.raises((ValueError, WorkbenchError), match="targets=head") as refused:
        apply_recipe(original, _recipe())
    assert "\n" not in str(refused.value)
    model = apply_recipe(original, _recipe("head")).loaded.model
    assert isinstance(model.get_output_embeddings(), Int4WeightOnlyLinear)
    with torch.no_grad():
        assert _close(original.model(IDS).logits, model(IDS).logits) < 0.15


def test_a_classifier_has_no_vocabulary_head(tiny_classifier_dir):
    classifier = load_model(str(tiny_classifier_dir), device="cpu")
    with pytest.raises((ValueError, WorkbenchError), match="no linear output head") as refused:
        apply_recipe(classifier, _recipe())
    assert "\n" not in str(refused.value)


def test_export_loads_back_with_the_int4_copy_shared_again(tiny_llama_dir, tmp_path):
    original = load_model(str(tiny_llama_dir), device="cpu")
    recipe = Recipe(
        (
            REGISTRY["int4_weight_only"](32, "rtn"),
            REGISTRY["int8_head"](bits=4, group_size=32),
        )
    )
    built = apply_recipe(original, recipe)
    list(run_export(original, recipe, tmp_path / "out", ("hf",), compressed=built))
    back = load_model(str(tmp_path / "out"), device="cpu").model
    head, embedding = back.get_output_embeddings(), back.get_input_embeddings()
    assert isinstance(embedding, Int4Embedding) and isinstance(head, Int4WeightOnlyLinear)
    assert head.weight_int4pack is embedding.weight_int4pack
    assert measure_size(back).total_bytes == measure_size(built.loaded.model).total_bytes
    with torch.no_grad():
        assert torch.equal(back(IDS).logits, built.loaded.model(IDS).logits)


def test_version_1_recipes_load_as_int8_and_cannot_carry_bits():
    old = pass_from_dict({"pass": "int8_head", "version": 1, "targets": "head"})
    assert old == REGISTRY["int8_head"]("head") and old.bits == 8
    with pytest.raises(RecipeError, match="version 1 has only the option targets"):
        pass_from_dict({"pass": "int8_head", "version": 1, "bits": 4})
    new = REGISTRY["int8_head"](bits=4, group_size=64)
    assert pass_from_dict(new.to_dict()) == new
    with pytest.raises(RecipeError, match="bits must be one of 8, 4"):
        pass_from_dict({"pass": "int8_head", "version": 2, "bits": 2})


@pytest.mark.parametrize("n,k", [(32, 64), (48, 64), (16, 32), (1008, 576)])
def test_rows_read_out_of_torchs_int4_packing(n, k):
    """Whole blocks of rows and a last partial block (48 = 32 + 16) alike."""
    q = torch.randint(0, 16, (n, k), dtype=torch.int32, generator=torch.Generator().manual_seed(1))
    first, step = row_fields(n, k)
    ids = torch.tensor([[n - 1, 0, 17 % n], [3, 3, n // 2]])
    assert torch.equal(gather_rows(pack_int4(q), first, step, ids, k), q[ids])


def test_gguf_writes_a_tied_int4_copy_once_on_a_q8_0_grid(tiny_llama_dir, tmp_path):
    """llama.cpp keeps the embedding 8-bit beside Q4 blocks: the int4 values
    are rounded onto Q8_0, and a tied copy is one token_embd."""
    from tests.test_export_gguf import TEXT, export_gguf, logit_diff, read_back

    llama = load_model(str(tiny_llama_dir), device="cpu")
    recipe = Recipe((REGISTRY["int4_weight_only"](32, "rtn"), *_recipe().passes))
    config, result, path = export_gguf(llama, recipe, tmp_path / "gguf", "q4_1")
    types = {t["name"]: t["type"] for t in result.details["gguf"]["tensors"]}
    assert types["token_embd.weight"] == "Q8_0" and "output.weight" not in types
    ids = llama.tokenizer(TEXT, return_tensors="pt").input_ids
    assert logit_diff(config.model, read_back(path)[0], ids) < 3e-2


def test_the_panel_draws_bits_and_group_size_from_the_pass_metadata(qtbot):
    from app.compression_panel import PassControls

    controls = PassControls(REGISTRY["int8_head"])
    qtbot.addWidget(controls)
    controls.setChecked(True)
    assert controls.config() == REGISTRY["int8_head"]()  # int8 by default
    for name, value in (("bits", 4), ("group_size", 64)):
        combo = controls.controls[name]
        combo.setCurrentIndex(combo.findData(value))
    assert controls.config() == REGISTRY["int8_head"](bits=4, group_size=64)


@pytest.mark.parametrize(
    "attribute,value,says",
    [
        ("group_size", 48, "group_size 48"),
        ("output_dtype", "int8", "output_dtype must be one of"),
        ("padding_idx", 10**6, "padding_idx must be"),
    ],
)
def test_an_edited_int4_embedding_entry_is_refused_in_one_line(
    tiny_llama_dir, tmp_path, attribute, value, says
):
    import json

    from core.errors import CorruptModelError

    original = load_model(str(tiny_llama_dir), device="cpu")
    built = apply_recipe(original, _recipe())
    list(run_export(original, _recipe(), tmp_path / "out", ("hf",), compressed=built))
    manifest_path = tmp_path / "out" / "workbench_export.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(m for m in manifest["modules"] if m["kind"] == "Int4Embedding")
    entry["attributes"][attribute] = value
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CorruptModelError, match=says) as refused:
        load_model(str(tmp_path / "out"), device="cpu")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("cast_first", [True, False])
def test_a_cast_before_or_after_keeps_one_copy_and_the_estimate(tiny_llama_dir, bits, cast_first):
    """A cast makes new Parameters sharing one storage (still tied), and a
    cast after the head must reach the embedding's output dtype."""
    original = load_model(str(tiny_llama_dir), device="cpu")
    head_pass, cast = REGISTRY["int8_head"](bits=bits), REGISTRY["cast"]("float16")
    recipe = Recipe((cast, head_pass) if cast_first else (head_pass, cast))
    built = apply_recipe(original, recipe)
    model = built.loaded.model
    assert any("copy serves both" in note for note in built.notes)
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    shared = ("weight_int4pack", "scales_and_zeros") if bits == 4 else ("weight_int8", "scales")
    assert all(getattr(head, name) is getattr(embedding, name) for name in shared)
    assert estimate_size(original.model, recipe).total_bytes == measure_size(model).total_bytes
    with torch.no_grad():
        logits = model(IDS).logits
        assert logits.dtype == torch.float16
        assert _close(original.model(IDS).logits, logits.float()) < 0.15


def test_compress_takes_the_int4_head_and_refuses_other_bits_in_one_line(tiny_llama_dir):
    import json

    from tests.test_cli import run_cli

    out = run_cli(
        "compress", "-m", str(tiny_llama_dir), "--pass", "int8_head:bits=4,group_size=64",
        "--no-eval", "--json", "--threads", "1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["recipe"]["passes"] == [REGISTRY["int8_head"](bits=4, group_size=64).to_dict()]
    original = load_model(str(tiny_llama_dir), device="cpu")
    built = apply_recipe(original, _recipe(group_size=64))
    assert record["bytes"] == measure_size(built.loaded.model).total_bytes
    refused = run_cli("compress", "-m", str(tiny_llama_dir), "--pass", "int8_head:bits=2")
    assert refused.returncode == 2
    assert "bits must be one of 8, 4" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
