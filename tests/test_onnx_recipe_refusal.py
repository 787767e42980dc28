"""A recipe of PyTorch int8/int4 layers cannot be traced to ONNX: a run on
an ONNX runtime and an ONNX export refuse it in one line before anything is
built (they used to fail deep in torch.export with its advice as the
message), and a torch.export failure is reported by its cause."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import UnsupportedModelError
from core.jobs import experiment
from core.jobs.export import ExportRequest, export
from core.models.loading import load_model
from core.onnx.export import _first_line
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


@pytest.mark.parametrize("name", ["int8_weight_only", "int4_weight_only", "int8_dynamic"])
def test_a_run_on_onnx_runtime_refuses_torch_quantised_layers_before_building(
    loaded, name, monkeypatch
):
    def never(*_args, **_kwargs):
        raise AssertionError("built before the refusal")

    monkeypatch.setattr(experiment, "build_compressed", never)
    recipe = Recipe((R["prune_mlp"](0.25), R[name]()))
    with pytest.raises(UnsupportedModelError, match=f"cannot trace {name}") as refused:
        list(experiment.run_experiment(loaded, recipe, backend="ort-w4"))
    assert "\n" not in str(refused.value)


def test_an_onnx_export_of_them_is_refused_and_writes_nothing(loaded, tmp_path):
    request = ExportRequest(
        loaded, tmp_path / "out", ("hf", "onnx"), recipe=Recipe((R["int8_head"](),))
    )
    with pytest.raises(UnsupportedModelError, match="cannot trace int8_head"):
        list(export(request))
    assert not (tmp_path / "out").exists()


def test_float_recipes_still_export(loaded, tmp_path):
    request = ExportRequest(
        loaded, tmp_path / "out", ("onnx",), recipe=Recipe((R["cast"](dtype="bfloat16"),))
    )
    assert list(export(request))
    assert (tmp_path / "out" / "onnx" / "model.onnx").exists()


def test_the_cli_says_it_in_one_line(tiny_llama_dir):
    out = subprocess.run(
        [sys.executable, "-m", "app.launcher", "compress", "-m", str(tiny_llama_dir)]
        + ["--backend", "ort", "--pass", "int4_weight_only", "--no-save"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: ONNX export cannot trace")
    assert "Traceback" not in out.stderr


def test_a_torch_export_failure_is_named_by_its_cause():
    report = (
        "Failed to export the model with torch.export. This is step 1/3.\n"
        "- If there is an internal error during ONNX conversion, debug the error.\n\n"
        "## Exception summary\n\n<class 'RuntimeError'>: Sizes of tensors must match\n"
    )
    assert (
        _first_line(RuntimeError(report)) == "<class 'RuntimeError'>: Sizes of tensors must match"
    )


@pytest.mark.parametrize("backend", ["ort-fused", "ort-fused-w8", "ort-fused-w4"])
@pytest.mark.parametrize("name", ["low_rank", "low_rank_aware"])
def test_a_factored_recipe_is_refused_on_the_fused_graph_before_building(
    loaded, backend, name, monkeypatch
):
    """The builder reloads a plain folder: factored layers came back random,
    and ort-fused-w8 measured and exported that graph (a sweep found it)."""

    def never(*_args, **_kwargs):
        raise AssertionError("built before the refusal")

    monkeypatch.setattr(experiment, "build_compressed", never)
    with pytest.raises(UnsupportedModelError, match="factored layer is not one") as refused:
        list(experiment.run_experiment(loaded, Recipe((R[name](),)), backend=backend))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("backend", ["ort", "ort-w4", "ort-int8-static-minmax", "ort-fused"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_cast_is_refused_on_an_onnx_runtime_before_building(
    loaded, backend, dtype, monkeypatch
):
    """The exporter traces an fp32 copy: the run was timed and sized as an
    fp32 graph under a 16-bit name (a sweep found such runs stored)."""

    def never(*_args, **_kwargs):
        raise AssertionError("built before the refusal")

    monkeypatch.setattr(experiment, "build_compressed", never)
    recipe = Recipe((R["cast"](dtype=dtype),))
    with pytest.raises(UnsupportedModelError, match=f"cast:dtype={dtype}: .*float32") as refused:
        list(experiment.run_experiment(loaded, recipe, backend=backend))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("backend", ["ort-int8", "ort-w4", "ort-int8-static-entropy"])
def test_the_refusal_never_suggests_the_runtime_it_refuses(loaded, backend):
    from core.jobs.on_runtime import runtime_refusal

    recipe = Recipe((R["int8_weight_only"](),))
    refusal = runtime_refusal(backend, loaded.model, recipe)
    suggested = refusal.split("quantise the graph (")[1].split(")")[0].split(", ")
    assert "ort-w8" in suggested and backend not in suggested
    assert "ort-int8-static-*" not in suggested or "static" not in backend
    assert "ort-int8" in suggested or backend == "ort-int8"
