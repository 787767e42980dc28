import json
import shutil

import pytest
import torch

from core.errors import (
    CorruptModelError,
    ModelNotFoundError,
    NotAModelError,
    UnsupportedModelError,
)
from core.models.loading import load_model


def test_loads_a_folder_and_describes_it(tiny_dir):
    loaded = load_model(str(tiny_dir), device="cpu")
    d = loaded.description
    unique = {p.data_ptr(): p.numel() for p in loaded.model.parameters()}
    assert d.parameters == sum(unique.values())
    assert d.bytes_by_dtype == {"float32": 4 * d.parameters}
    assert d.layers == 2 and d.hidden_size == 64
    assert d.device == "cpu"
    weights = sum(p.stat().st_size for p in tiny_dir.glob("*.safetensors"))
    assert d.bytes_on_disk == weights


def test_tied_embeddings_counted_once(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    assert loaded.description.tied_embeddings
    all_params = sum(p.numel() for _, p in loaded.model.named_parameters(remove_duplicate=False))
    embed = loaded.model.get_input_embeddings().weight.numel()
    assert loaded.description.parameters == all_params - embed


def test_dtype_choice_changes_bytes(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu", dtype="bfloat16")
    assert loaded.model.dtype == torch.bfloat16
    assert loaded.description.bytes_by_dtype == {"bfloat16": 2 * loaded.description.parameters}


def test_missing_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="No such folder"):
        load_model(str(tmp_path / "nope" / "deeper"))


def test_folder_without_config(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(NotAModelError, match="config.json"):
        load_model(str(tmp_path))


def test_unsupported_architecture(tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="not a causal language model"):
        load_model(str(tmp_path))


def test_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(UnsupportedModelError):
        load_model(str(tmp_path))


def test_corrupt_weights(tiny_gpt2_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_gpt2_dir, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated download
    with pytest.raises(CorruptModelError):
        load_model(str(copy))


def test_missing_weights_are_an_error_not_random(tiny_gpt2_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "model"
    shutil.copytree(tiny_gpt2_dir, copy)
    tensors = load_file(copy / "model.safetensors")
    dropped = next(k for k in tensors if "mlp" in k)
    del tensors[dropped]
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CorruptModelError, match="missing"):
        load_model(str(copy))


def test_user_files_are_not_written(tiny_gpt2_dir):
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in tiny_gpt2_dir.iterdir()}
    load_model(str(tiny_gpt2_dir))
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in tiny_gpt2_dir.iterdir()}
    assert before == after
