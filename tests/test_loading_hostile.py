"""Hostile or damaged folders are refused in one line before transformers
builds anything: sizes that are not positive, a config describing far more
weights than its files hold (it would allocate terabytes, or build a
million layers), weights of the wrong shape, and a pickle that would run
code when unpickled."""

from __future__ import annotations

import copy
import json
import os
import shutil
import time

import pytest
import torch

from core.errors import CorruptModelError
from core.models.loading import load_model


def edited(source, tmp_path, **fields):
    copy = tmp_path / "model"
    shutil.copytree(source, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(fields)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(
    "fields, said",
    [
        ({"hidden_size": -64}, "hidden_size is -64"),
        ({"num_hidden_layers": 0}, "num_hidden_layers is 0"),
        ({"vocab_size": 2.5}, "vocab_size.*2.5"),
        ({"vocab_size": 10**11}, "cut short, or the config belongs to other weights"),
        ({"num_hidden_layers": 10**6}, "cut short, or the config belongs to other weights"),
        # the MLP alone: transformers allocated gigabytes for the "missing" weights
        ({"intermediate_size": 4_000_000}, "intermediate_size 4000000.*cut short"),
        ({"sliding_window": 0}, "sliding_window is 0"),
        # transformers' own validator divides by it (ZeroDivisionError) before ours runs
        ({"num_attention_heads": 0}, "num_attention_heads is 0"),
        ({"head_dim": -4}, "head_dim is -4"),
        ({"max_position_embeddings": 0}, "max_position_embeddings is 0"),
        ({"rms_norm_eps": None}, "refused by transformers' checks.*rms_norm_eps"),
    ],
    ids=[
        "negative",
        "zero",
        "fraction",
        "vocab-bomb",
        "layer-bomb",
        "mlp-bomb",
        "no-window",
        "zero-heads",
        "negative-head-dim",
        "no-context",
        "null-eps",
    ],
)
def test_a_config_that_cannot_fit_its_weights_is_refused_at_once(
    tiny_llama_dir, tmp_path, fields, said
):
    folder = edited(tiny_llama_dir, tmp_path, **fields)
    start = time.perf_counter()
    with pytest.raises(CorruptModelError, match=said) as refused:
        load_model(str(folder), device="cpu")
    assert time.perf_counter() - start < 30  # nothing was built (a million layers take minutes)
    assert "\n" not in str(refused.value)


def test_weights_of_another_shape_are_refused_in_one_line(tiny_llama_dir, tmp_path, caplog):
    folder = edited(tiny_llama_dir, tmp_path, vocab_size=600)  # the files hold 512 rows
    with pytest.raises(CorruptModelError, match="shapes do not match config.json"):
        load_model(str(folder), device="cpu")
    # transformers' multi-line LOAD REPORT is held back: the refusal is the one line
    assert "LOAD REPORT" not in caplog.text


def test_a_stray_tensor_loads_with_transformers_report(tiny_llama_dir, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.stray_extra"] = torch.zeros(3)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    load_model(str(folder), device="cpu")
    # the report held while loading is shown once the model is accepted
    assert "LOAD REPORT" in caplog.text and "model.stray_extra" in caplog.text


def test_a_pickle_that_would_run_code_is_not_unpickled(tiny_llama_dir, tmp_path):
    from safetensors.torch import load_file

    class Payload:
        def __reduce__(self):
            return (exec, ("open(__import__('os').environ['CANARY'], 'w').close()",))

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**tensors, "extra": Payload()}, folder / "pytorch_model.bin")
    canary = tmp_path / "ran"
    os.environ["CANARY"] = str(canary)
    try:
        with pytest.raises(CorruptModelError, match="could run code"):
            load_model(str(folder), device="cpu")
    finally:
        del os.environ["CANARY"]
    assert not canary.exists()  # torch's weights-only load refused the reduce


def test_another_models_tokenizer_is_refused_at_load(tmp_path):
    from tests.tiny_models import save_tiny_model

    # 512-token tokenizer, 300-row embedding: every id past 299 was an IndexError mid-run
    folder = save_tiny_model("llama", tmp_path / "model", vocab_size=300)
    with pytest.raises(CorruptModelError, match="512 tokens but the model's embedding has 300"):
        load_model(str(folder), device="cpu")


def test_an_embedding_padded_past_the_tokenizer_loads(tmp_path):
    from tests.tiny_models import save_tiny_model

    folder = save_tiny_model("llama", tmp_path / "model", vocab_size=640)  # as SmolLM2, Qwen
    assert load_model(str(folder), device="cpu").description.vocab_size == 640


def test_a_token_added_past_the_embedding_is_noted_and_a_prompt_holding_it_refused(tmp_path):
    from core.runtime.generation import encode_prompt
    from core.serve.api_errors import ApiError
    from core.serve.limits import ServeLimits
    from core.serve.prompts import completion_ids
    from core.serve.served_model import serve_model
    from tests.tiny_models import save_tiny_model, tiny_tokenizer

    folder = save_tiny_model("llama", tmp_path / "model")  # 512 rows
    tokenizer = copy.deepcopy(tiny_tokenizer())
    tokenizer.add_tokens(["<pad-added>"])  # id 512: a pad token added after training
    tokenizer.save_pretrained(folder)
    loaded = load_model(str(folder), device="cpu")
    assert any("1 added token(s)" in note for note in loaded.description.notes)
    assert encode_prompt(loaded, "plain text").shape[1] > 0
    with pytest.raises(ValueError, match=r"id 512.*512-row embedding"):
        encode_prompt(loaded, "text <pad-added> here")
    served = serve_model(loaded, "tiny", ServeLimits())
    with pytest.raises(ApiError, match="no row in the model's 512-row embedding"):
        completion_ids(served, "text <pad-added> here")


def test_a_weight_file_cut_to_a_few_bytes_is_called_cut_short_in_readable_sizes(
    tiny_llama_dir, tmp_path
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(
        CorruptModelError, match=r"KiB of weights .* hold 10 B: the weight files are cut short"
    ):
        load_model(str(folder), device="cpu")


@pytest.mark.parametrize(
    "fields, error, said",
    [
        ({"hidden_act": "bogus"}, "CorruptModelError", "cannot be built.*KeyError"),
        ({"pad_token_id": 10**6}, "CorruptModelError", "cannot be built.*AssertionError"),
        (
            {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}},
            "UnsupportedModelError",
            "needs a package this install does not have",
        ),
        ({"num_hidden_layers": 1}, "CorruptModelError", "hold layer 1 but config.json describes 1"),
    ],
    ids=["unknown-activation", "padding-past-vocab", "prequantized", "fewer-layers"],
)
def test_configs_transformers_cannot_build_are_refused_in_one_line(
    tiny_llama_dir, tmp_path, fields, error, said
):
    folder = edited(tiny_llama_dir, tmp_path, **fields)
    with pytest.raises(Exception, match=said) as err:
        load_model(str(folder), device="cpu")
    assert type(err.value).__name__ == error and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name, text", [("tokenizer_config.json", "[]"), ("tokenizer.json", '{"garbage": true}')]
)
def test_damaged_tokenizer_files_are_refused_in_one_line(tiny_llama_dir, tmp_path, name, text):
    from core.errors import NotAModelError

    folder = edited(tiny_llama_dir, tmp_path)
    (folder / name).write_text(text)
    with pytest.raises(NotAModelError, match="no usable tokenizer") as err:
        load_model(str(folder), device="cpu")
    assert "\n" not in str(err.value)


def test_a_path_that_is_not_utf8_is_named_as_the_problem(tiny_llama_dir, tmp_path):
    """Linux allows any bytes in a name; the readers take UTF-8 paths. The
    files are intact, so the path, not a "damaged weight file", is named."""
    from core.errors import UnsupportedModelError

    folder = os.fsdecode(os.fsencode(tmp_path) + b"/model\xff")
    shutil.copytree(tiny_llama_dir, folder)
    with pytest.raises(UnsupportedModelError, match="path is not valid UTF-8") as refused:
        load_model(folder, device="cpu")
    assert "damaged" not in str(refused.value)
    str(refused.value).encode("utf-8")  # the message itself prints anywhere


def test_a_location_too_long_for_the_file_system_is_one_line():
    from core.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="File name too long") as error:
        load_model("/tmp/" + "a" * 5000, device="cpu")
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_a_folder_without_tokenizer_files_says_so(tiny_llama_dir, tmp_path):
    """transformers' own words ended mid-sentence ("...from one of: ")."""
    from core.errors import NotAModelError

    folder = edited(tiny_llama_dir, tmp_path)
    for path in folder.glob("tokenizer*"):
        path.unlink()
    with pytest.raises(NotAModelError, match="no tokenizer files .*tokenizer.json"):
        load_model(str(folder), device="cpu")
