"""ONNX export for every causal family the passes support (GPT-2, Llama,
Mistral, Qwen2, Qwen3, Phi-3, Gemma 2, Gemma 3 text) and the others of
``EXPORTABLE`` (``tests/tiny_models.EXPORT_CONFIGS`` and the mixtures of
experts in ``MOE_CONFIGS``), on tiny random models:
the export passes its fidelity gate (which also decodes through the graph's
KV cache), decoding token by token through the cache past the sliding window
matches PyTorch's logits, and generation gives PyTorch's tokens. A family
the export cannot take is refused in one line before any work."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.errors import UnsupportedModelError
from core.models.loading import load_model
from core.onnx.export import export_onnx
from core.onnx.fidelity import DECODE_STEPS, cached_decode_logits
from core.runtime import torch_runner
from core.runtime.onnx import ort_runner
from core.runtime.onnx.families import EXPORTABLE, export_refusal
from core.runtime.onnx.ort_model import OrtCausalLM
from core.runtime.sampling import Sampling
from tests.tiny_models import CAUSAL_KINDS, EXPORT_KINDS, save_tiny_model, tiny_config

TEXT = (
    "The built-in function len() returns the number of items in a container. It works for "
    "lists, tuples and dictionaries alike, and for any object that defines __len__."
)


@pytest.fixture(scope="module", params=EXPORT_KINDS)
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"onnx-{request.param}")
    loaded = load_model(str(save_tiny_model(request.param, root / "model")), device="cpu")
    result = export_onnx(loaded, root / "export")
    graph = OrtCausalLM(result.model_file, loaded.model.config, loaded.model.generation_config)
    return request.param, loaded, result, graph


def test_the_exportable_families_are_exactly_the_tested_ones():
    """Every family tests/test_families.py runs the passes on is exportable,
    and every exportable family is exported here."""
    assert {tiny_config(kind).model_type for kind in CAUSAL_KINDS} <= set(EXPORTABLE)
    assert {tiny_config(kind).model_type for kind in EXPORT_KINDS} == set(EXPORTABLE)


def test_export_passes_the_fidelity_gate_with_cached_decode(exported):
    _, _, result, _ = exported
    f = result.fidelity
    assert f.passed and not f.int8
    assert f.decode_positions == DECODE_STEPS
    assert f.top1_agreement >= 0.999 and f.max_abs_logit_diff < 1e-3


def test_decode_through_the_cache_matches_pytorch_past_the_sliding_window(exported):
    """Prefill 5 tokens, then one token per step up to 40: Mistral's and
    Gemma's sliding window (8 in the tiny configs) is passed many times over."""
    family, loaded, _, graph = exported
    ids = loaded.tokenizer(TEXT, return_tensors="pt").input_ids[0, :40]
    assert ids.numel() == 40
    with torch.no_grad():
        reference = loaded.model(input_ids=ids.view(1, -1)).logits[0, 5:]
    decoded = cached_decode_logits(graph, ids, steps=35)
    difference = (decoded - reference).abs().max().item()
    assert difference < 1e-4, f"{family}: decode differs from PyTorch by {difference:.2e}"


def test_generated_tokens_equal_pytorch(exported):
    family, loaded, _, graph = exported
    ids = loaded.tokenizer(TEXT, return_tensors="pt").input_ids[:, :12]
    for sampling in (Sampling(), Sampling(temperature=1.0, seed=3)):
        ours = [s.token_id for s in ort_runner.generate_steps(graph, ids, 20, sampling)]
        theirs = [s.token_id for s in torch_runner.generate_steps(loaded.model, ids, 20, sampling)]
        assert ours == theirs, f"{family} with {sampling}"
    sampled = [s.token_id for s in ort_runner.generate_steps(graph, ids, 20, Sampling(1.0, seed=3))]
    assert len(set(sampled)) > 3  # the sampled run varies, so its match means something


def test_cache_grows_by_one_position_per_step(exported):
    """Every layer, sliding or not, hands back its whole cache."""
    _, loaded, _, graph = exported
    ids = loaded.tokenizer(TEXT, return_tensors="np").input_ids[:, :20].astype(np.int64)
    out = graph.step(ids, graph.empty_cache(), np.array([19]))
    out = graph.step(ids[:, :1], out.present, np.array([0]))
    assert {value.shape()[2] for value in out.present} == {21}


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (SimpleNamespace(model_type="bert"), "encoder"),
        (SimpleNamespace(model_type="gemma3"), "vision tower"),
        (SimpleNamespace(model_type="mamba"), "does not take 'mamba'"),
        (SimpleNamespace(model_type="mpt"), "torch.export fails"),
        (SimpleNamespace(model_type="falcon", alibi=True), "bfloat16"),
        (
            SimpleNamespace(model_type="llama", rope_parameters={"rope_type": "dynamic"}),
            "dynamic RoPE",
        ),
        (
            SimpleNamespace(
                model_type="gemma3_text",
                rope_parameters={
                    "full_attention": {"rope_type": "dynamic"},
                    "sliding_attention": {"rope_type": "default"},
                },
            ),
            "dynamic RoPE",
        ),
    ],
)
def test_a_family_that_cannot_be_exported_says_why(config, words, tmp_path):
    refusal = export_refusal(config)
    assert refusal is not None and words in refusal and "\n" not in refusal
    fake = SimpleNamespace(model=SimpleNamespace(config=config))
    with pytest.raises(UnsupportedModelError, match=words):
        export_onnx(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_supported_configs_are_not_refused():
    for kind in EXPORT_KINDS:
        assert export_refusal(tiny_config(kind)) is None


def test_a_run_on_onnx_is_refused_before_the_recipe_is_built(tiny_llama_dir, monkeypatch):
    """The run job asks before building: a refused family never reaches the passes."""
    from core.jobs import experiment
    from core.passes.recipe import Recipe

    loaded = load_model(str(tiny_llama_dir), device="cpu")
    loaded.model.config.rope_parameters = {"rope_type": "dynamic", "factor": 2.0}

    def never(*_args, **_kwargs):
        raise AssertionError("built before the refusal")

    monkeypatch.setattr(experiment, "build_compressed", never)
    recipe = Recipe.from_dict({"format": 1, "passes": [{"pass": "int8_weight_only", "version": 1}]})
    with pytest.raises(UnsupportedModelError, match="dynamic RoPE"):
        list(experiment.run_experiment(loaded, recipe, backend="ort"))


def test_a_quantised_opt_graph_passes_its_gate(tmp_path):
    """The traced OPT graph's shape annotations disagreed with ONNX's own
    inference and stopped ONNX Runtime's quantiser; they are dropped first."""
    loaded = load_model(str(save_tiny_model("opt", tmp_path / "model")), device="cpu")
    result = export_onnx(loaded, tmp_path / "export", int8=True)
    assert result.int8 and result.fidelity.passed


def test_a_quantiser_failure_is_one_line_and_leaves_nothing(tiny_llama_dir, tmp_path, monkeypatch):
    from core.errors import ExportFailedError
    from core.onnx import int8

    def broken(*_args, **_kwargs):
        raise RuntimeError("[ShapeInferenceError] shapes differ\nsecond line")

    monkeypatch.setattr(int8, "quantize_graph", broken)
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    with pytest.raises(ExportFailedError, match="ONNX quantisation failed: .*shapes differ") as err:
        export_onnx(loaded, tmp_path / "out", int8=True)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
