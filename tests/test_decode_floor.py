"""The bytes a decode step reads (the floor's numerator): every stored weight
once, a token embedding only when the head reads it whole (tied), on PyTorch
models and on exported graphs alike."""

from __future__ import annotations

import copy

import pytest
import torch

from core.measure.decode_floor import bytes_read_per_token, memory_bandwidth_bytes_per_s
from core.models.loading import load_model


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def _bytes(tensors) -> int:
    """Each storage once (tied weights, aliased buffers)."""
    unique = {t.untyped_storage().data_ptr(): t for t in tensors}
    return sum(t.numel() * t.element_size() for t in unique.values())


def test_tied_head_reads_the_embedding_whole(loaded):
    model = loaded.model
    assert model.lm_head.weight is model.get_input_embeddings().weight  # tiny Llama is tied
    assert bytes_read_per_token(model) == _bytes([*model.parameters(), *model.buffers()])


def test_untied_embedding_is_gathered_not_read(loaded):
    model = copy.deepcopy(loaded.model)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    embedding = model.get_input_embeddings().weight
    stored = _bytes([*model.parameters(), *model.buffers()])
    assert bytes_read_per_token(model) == stored - _bytes([embedding])


def test_graph_bytes_exclude_the_gathered_table(loaded, tmp_path, monkeypatch):
    from core.onnx.cache import load_ort_version

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    fp32 = load_ort_version(loaded, device="cpu").model
    w4 = load_ort_version(loaded, device="cpu", weight_bits=4).model
    torch_read = bytes_read_per_token(loaded.model)
    # fp32 graph: the tied head is stored untied (transposed), the table only gathered
    assert abs(bytes_read_per_token(fp32) - torch_read) <= 0.01 * torch_read
    # int4 blocks of 32 with fp32 scales: ~0.156 bytes per weight of the fp32 4
    assert bytes_read_per_token(w4) < 0.2 * bytes_read_per_token(fp32)


def test_bandwidth_is_measured():
    assert 1e8 < memory_bandwidth_bytes_per_s(size_bytes=32 * 2**20, repeats=2) < 1e13


def test_a_mixture_reads_only_its_chosen_experts(tmp_path):
    """A decode step of a mixture reads top_k of its experts per layer."""
    from tests.tiny_models import save_tiny_model

    model = load_model(str(save_tiny_model("mixtral", tmp_path / "m")), device="cpu").model
    experts = [m for m in model.modules() if hasattr(m, "_apply_gate")]
    expert_bytes = _bytes([p for m in experts for p in m.parameters(recurse=False)])
    stored = _bytes([*model.parameters(), *model.buffers()])  # tied: the head reads it all
    k, n = model.config.num_experts_per_tok, model.config.num_local_experts
    assert 0 < k < n
    assert bytes_read_per_token(model) == round(stored - expert_bytes * (1 - k / n))
