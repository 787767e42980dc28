"""An export of a run hands over the model that run measured, or refuses:
the dtype it was loaded in, the files it was loaded from and their place are
kept with the run and checked again (a sweep found each of them exported
silently under the run's numbers)."""

from __future__ import annotations

import json

import pytest
import torch

from core.cli.main import main
from core.results.store import ResultsStore
from tests.tiny_models import save_tiny_model


def _cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _compress(model, capsys, *extra):
    code, out, err = _cli(
        ["compress", "--model", str(model), "--pass", "prune_mlp:fraction=0.25", "--no-eval",
         "--device", "cpu", "--json", *extra],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)


def _export(model, out, capsys, *extra):
    return _cli(
        ["export", "--model", str(model), "--last", "--out", str(out), "--device", "cpu", *extra],
        capsys,
    )


def test_run_in_bfloat16_exports_only_in_bfloat16(private_store, capsys):
    model = save_tiny_model("llama", private_store / "m")
    run = _compress(model, capsys, "--dtype", "bfloat16")
    assert run["artifact"]["source_dtype"] == "bfloat16" and run["artifact"]["source_sha256"]

    code, _, err = _export(model, private_store / "in-fp32", capsys)
    assert code == 2 and "loaded in bfloat16, not float32" in err
    assert not (private_store / "in-fp32").exists()

    code, _, err = _export(model, private_store / "in-bf16", capsys, "--dtype", "bfloat16")
    assert code == 0, err
    report = json.loads((private_store / "in-bf16" / "report.json").read_text())
    assert all("--dtype bfloat16" in line for line in report["reproduce"]["commands"])
    weights = (private_store / "in-bf16" / "model.safetensors").stat().st_size
    assert run["bytes"] <= weights < run["bytes"] + 8192  # the run's bytes and a header


def test_model_files_changed_after_the_run_are_refused(private_store, capsys):
    model = save_tiny_model("llama", private_store / "m")
    _compress(model, capsys)
    save_tiny_model("llama", model, seed=5)  # same shapes, other weights

    code, _, err = _export(model, private_store / "out", capsys)
    assert code == 2 and "not the ones run" in err and "sha256 differs" in err
    assert not (private_store / "out").exists()


def test_a_relative_model_path_is_stored_absolute(private_store, capsys, monkeypatch):
    model = save_tiny_model("llama", private_store / "a" / "m")
    monkeypatch.chdir(private_store / "a")
    run = _compress("m", capsys)
    assert run["model"] == str(model)
    assert ResultsStore().load()[-1].model == str(model)

    # From another folder the same relative name is another folder (or none).
    save_tiny_model("llama", private_store / "b" / "m", seed=5)
    monkeypatch.chdir(private_store / "b")
    code, _, err = _cli(
        ["export", "--model", "m", "--run", run["run_id"], "--out", str(private_store / "o"),
         "--device", "cpu"],
        capsys,
    )  # fmt: skip
    assert code == 2 and f"pass --model {model}" in err


def test_a_folder_reached_through_a_link_is_stored_as_the_folder(private_store, capsys):
    """Its runs counted as another model's: refused in comparisons with the
    folder's own (sweep ten)."""
    model = save_tiny_model("llama", private_store / "real")
    link = private_store / "link"
    link.symlink_to(model, target_is_directory=True)
    run = _compress(str(link), capsys)
    assert run["model"] == str(model.resolve())


def test_the_report_of_an_onnx_runtime_run_reproduces_on_that_runtime(private_store):
    from core.export.report import commands

    class Run:
        backend, artifact = "ort", {"source_dtype": "float32"}

    compress, export = commands("/m", ("hf", "report"), None, Run())
    assert "--backend ort" in compress and "--dtype" not in compress
    assert "--backend" not in export  # the export's graph is the run's own


def test_a_model_whose_logits_are_nan_is_refused_with_that_reason(tmp_path):
    from core.errors import WorkbenchError
    from core.jobs.write_export import run_export
    from core.models.loading import load_model
    from core.passes.recipe import Recipe
    from tests.tiny_models import save_nan_copy

    source = save_tiny_model("llama", tmp_path / "m")
    nan = load_model(str(save_nan_copy(source, tmp_path / "nan")), device="cpu")
    with pytest.raises(WorkbenchError, match="not numbers"):
        list(run_export(nan, Recipe(), tmp_path / "out", ("hf",)))
    assert not (tmp_path / "out").exists()


def test_pruned_heads_reload_with_their_attention_mask(tmp_path):
    """GPT-2 (causal mask) and BERT (padding mask) with heads pruned went
    through the exported loader's config swap without an attention
    implementation: no mask at all after reload."""
    from core.jobs.write_export import run_export
    from core.models.loading import load_model
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe
    from tests.tiny_models import save_tiny_classifier

    gpt2 = load_model(str(save_tiny_model("gpt2", tmp_path / "g")), device="cpu")
    list(run_export(gpt2, Recipe((R["prune_heads"](0.25),)), tmp_path / "g-out", ("hf",)))
    reloaded = load_model(str(tmp_path / "g-out"), device="cpu")
    ids = torch.arange(3, 19).view(1, -1)
    with torch.no_grad():  # causal: a later token does not change an earlier logit
        whole = reloaded.model(ids).logits[0, :8]
        prefix = reloaded.model(ids[:, :8]).logits[0]
    torch.testing.assert_close(whole, prefix, atol=1e-5, rtol=0)

    bert = load_model(str(save_tiny_classifier(tmp_path / "c")), device="cpu")
    list(run_export(bert, Recipe((R["prune_heads"](0.25),)), tmp_path / "c-out", ("hf",)))
    reloaded = load_model(str(tmp_path / "c-out"), device="cpu").model
    assert reloaded.config.num_attention_heads == 3  # 64 / 3 is not whole: the override path
    short = torch.tensor([[2, 40, 41, 42, 3]])
    padded = torch.cat([short, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 5), torch.zeros(1, 4)], dim=1).long()
    with torch.no_grad():
        alone = reloaded(short).logits
        with_pad = reloaded(padded, attention_mask=mask).logits
    torch.testing.assert_close(alone, with_pad, atol=1e-5, rtol=0)


def test_an_onnx_export_of_a_cast_run_says_its_graph_is_float32(tmp_path):
    from core.jobs.write_export import ExportResult, run_export
    from core.models.loading import load_model
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe

    loaded = load_model(str(save_tiny_model("llama", tmp_path / "m")), device="cpu")
    events = list(run_export(loaded, Recipe((R["cast"]("float16"),)), tmp_path / "o", ("onnx",)))
    result = next(e for e in events if isinstance(e, ExportResult))
    assert result.details["onnx"]["upcast_from"] == "float16"
    assert "upcast to float32" in result.summaries["onnx"]


def test_a_classifiers_folder_names_the_auto_class_that_loads_it_whole(tmp_path):
    """The summary said AutoModelForCausalLM for a classifier too: following
    it dropped the classifier head and made a random LM head (sweep nine)."""
    import re

    import transformers

    from core.export.formats import FormatWritten
    from core.jobs.write_export import run_export
    from core.models.loading import load_model
    from core.passes.recipe import Recipe
    from tests.tiny_models import save_tiny_classifier

    bert = load_model(str(save_tiny_classifier(tmp_path / "c")), device="cpu")
    events = list(run_export(bert, Recipe(), tmp_path / "out", ("hf",)))
    (written,) = [e for e in events if isinstance(e, FormatWritten)]
    auto = re.search(r"(AutoModel\w*)\.from_pretrained loads it", written.summary).group(1)
    assert auto == "AutoModelForSequenceClassification"
    model, info = getattr(transformers, auto).from_pretrained(
        tmp_path / "out", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.tensor([[2, 40, 41, 42, 3]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, bert.model(ids).logits)
