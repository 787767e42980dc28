"""Long-context RoPE (longrope: Phi-3-128k, Phi-3.5, Phi-4-mini) in ONNX:
past its original context the model switches to its long factors, which
neither the traced nor the fused graph follows, so both graphs pass the gate
on windows within that context, run exactly there, and refuse a longer
sequence in one line; the runtime's context (which every protocol reads) is
that original context, while the config stored beside the graph stays the
model's own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.models.loading import load_model
from core.models.loading_onnx import load_onnx_folder
from core.onnx.export import REPORT_FILE, export_onnx
from core.runtime import torch_runner
from core.runtime.generation import context_length
from core.runtime.onnx import ort_runner
from core.runtime.onnx.families import exact_positions, export_refusal
from tests.tiny_models import save_tiny_model

ORIGINAL = 64  # the original context; the tiny model's whole context is 256
LONGROPE = {
    "original_max_position_embeddings": ORIGINAL,
    "rope_parameters": {
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 1.0,
        "short_factor": [1.0 + 0.1 * i for i in range(8)],
        "long_factor": [2.0 + 0.5 * i for i in range(8)],
    },
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = save_tiny_model("phi3", tmp_path_factory.mktemp("longrope") / "phi3", **LONGROPE)
    return load_model(str(folder), device="cpu")


@pytest.fixture(scope="module", params=["traced", "fused"])
def exported(request, loaded, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"longrope-{request.param}") / "export"
    result = export_onnx(loaded, out, fused=request.param == "fused")
    return result, load_onnx_folder(out, "tiny longrope", "cpu")


def test_longrope_is_exported_with_its_original_context_as_the_limit(loaded, exported):
    result, graph = exported
    assert export_refusal(loaded.model.config) is None
    assert exact_positions(loaded.model.config) == ORIGINAL
    assert result.fidelity.passed and result.exact_positions == ORIGINAL
    assert json.loads((result.folder / REPORT_FILE).read_text())["exact_positions"] == ORIGINAL
    # the gate's windows stay within the original context
    assert result.fidelity.positions <= 4 * ORIGINAL + result.fidelity.decode_positions
    assert context_length(graph.model.config) == ORIGINAL
    stored = json.loads((result.folder / "config.json").read_text())
    assert stored["max_position_embeddings"] == loaded.model.config.max_position_embeddings


def test_tokens_within_the_limit_equal_pytorch(loaded, exported):
    _, graph = exported
    ids = torch.randint(5, 200, (1, 30), generator=torch.Generator().manual_seed(0))
    ours = [s.token_id for s in ort_runner.generate_steps(graph.model, ids, ORIGINAL - 30)]
    theirs = [s.token_id for s in torch_runner.generate_steps(loaded.model, ids, ORIGINAL - 30)]
    assert ours == theirs


def test_a_sequence_past_the_limit_is_refused_in_one_line(exported):
    _, graph = exported
    model = graph.model
    ids = np.arange(5, 5 + ORIGINAL, dtype=np.int64)[None]
    out = model.step(ids, model.empty_cache(), np.array([ORIGINAL - 1]))  # exactly the limit
    with pytest.raises(ValueError, match=f"up to {ORIGINAL} positions") as err:
        model.step(ids[:, :1], out.present, np.array([0]))
    assert "\n" not in str(err.value)
