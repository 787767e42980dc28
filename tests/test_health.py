"""The broken flag: a configuration whose top-1 agreement falls below 0.5 or
whose perplexity passes 3x the original's is flagged with a likely cause."""

import copy
import dataclasses
import html
import json

import pytest
import torch

from core.evaluate.health import broken_cause, likely_cause
from core.evaluate.perplexity import PerplexityProtocol
from core.jobs.experiment import ExperimentSettings, measure_configuration, run_experiment
from core.measure.speed import BenchSettings
from core.models.linear_layers import block_linears
from core.models.loading import load_model
from core.passes import REGISTRY
from core.passes.recipe import Recipe
from core.results.store import RunRecord

TINY = ExperimentSettings(
    bench=BenchSettings(prompt_tokens=16, new_tokens=4, warmup=0, min_repeats=1, min_time_s=0),
    perplexity=PerplexityProtocol(context_tokens=64, stride=32, quick_windows=3, source="pydoc"),
    calibration_windows=4,
    calibration_length=64,
    text_source="pydoc",
)


def _recipe(*items) -> dict:
    return {"format": 1, "passes": list(items)}


def test_healthy_or_unmeasured_is_not_broken():
    assert broken_cause(0.93, 1.02) == ""
    assert broken_cause(0.5, 3.0) == ""  # the bounds themselves are still healthy
    assert broken_cause(None, None) == ""


def test_not_a_number_is_broken_not_healthy():
    """NaN compares false with both bounds: NaN weights passed as healthy."""
    nan = float("nan")
    assert "perplexity is not a number" in broken_cause(0.9, nan)
    assert "top-1 agreement is not a number" in broken_cause(nan, 1.0)
    assert broken_cause(0.9, float("inf")).startswith("collapsed: perplexity inf")


def test_collapse_names_both_numbers_and_the_strongest_setting():
    recipe = _recipe(
        {"pass": "int8_weight_only", "version": 1},
        {"pass": "prune_unstructured", "version": 1, "sparsity": 0.9, "scope": "per_layer"},
    )
    cause = broken_cause(0.12, 8.1, recipe)
    assert cause.startswith("collapsed: top-1 agreement 0.12 < 0.5; perplexity 8.1x")
    assert cause.endswith(
        "likely cause: unstructured pruning at 90% sparsity, or else int8 weights"
    )


def test_one_failing_criterion_is_enough_and_only_it_is_named():
    low_rank = _recipe({"pass": "low_rank", "version": 1, "rank_ratio": 0.1})
    cause = broken_cause(0.8, 4.0, low_rank)
    assert "perplexity 4.0x" in cause and "agreement" not in cause
    assert "low rank: 10% of full rank kept" in cause
    assert "top-1 agreement 0.40" in broken_cause(0.4, 1.5, low_rank)


def test_likely_causes_read_the_recipe_family_and_backend():
    rtn = _recipe({"pass": "int4_weight_only", "version": 1, "group_size": 128, "method": "rtn"})
    assert "int4 without calibration" in likely_cause(rtn)
    smooth = _recipe({"pass": "int8_dynamic", "version": 2, "smooth_alpha": 0.5})
    assert "SmoothQuant" in likely_cause(smooth, model_type="gemma2")
    assert "not written for" not in likely_cause(smooth, model_type="llama")
    assert "ONNX Runtime int8" in likely_cause(_recipe(), backend="ort-int8")
    assert "int4 weights rounded to nearest" in likely_cause(_recipe(), backend="ort-w4")
    assert "int4 weights in blocks of 32 (GPTQ)" in likely_cause(_recipe(), backend="ort-fused-w4")
    assert "static int8" in likely_cause(_recipe(), backend="ort-int8-static-minmax")
    assert "no setting in the recipe" in likely_cause(_recipe(), backend="ort-w8")
    assert "no setting in the recipe" in likely_cause(_recipe())
    heads = _recipe({"pass": "prune_heads", "version": 1, "fraction": 0.75})
    assert "75% of the attention heads" in likely_cause(heads)
    two_four = _recipe({"pass": "prune_wanda", "version": 1, "sparsity": 0.1, "pattern": "2:4"})
    assert "50% of the weights zeroed (2:4 pattern)" in likely_cause(two_four)
    mlp = {"pass": "prune_mlp", "version": 1, "fraction": 0.25}
    static = likely_cause(_recipe(mlp), backend="ort-int8-static-minmax")
    assert static == (
        "ONNX Runtime static int8 (activation ranges from calibration), "
        "or else aggressive pruning: 25% of the MLP neurons removed"
    )
    layer = _recipe({"pass": "prune_layers", "version": 1, "count": 1})
    assert likely_cause(layer) == "1 whole layer dropped"


def test_a_wrecked_configuration_is_flagged_in_its_record(tiny_llama_dir):
    original = load_model(str(tiny_llama_dir), device="cpu")
    healthy = list(run_experiment(original, Recipe(), TINY))[-1]
    assert healthy.broken == "" and healthy.metrics.ppl_ratio == 1.0
    # A tiny random model with a tied head mostly predicts its input token, so
    # passes barely move its top-1; the wreck here is its copy with every
    # block linear scaled 50x (the residual stream swamped), measured as if
    # the recipe had built it.
    model = copy.deepcopy(original.model)
    with torch.no_grad():
        for _, linear in block_linears(model):
            linear.weight.mul_(50)
    wreck = dataclasses.replace(original, model=model)
    recipe = Recipe((REGISTRY["low_rank"](0.05),))
    record = list(measure_configuration(original, wreck, recipe, [], TINY))[-1]
    assert record.metrics.top1_agreement < 0.5 and record.metrics.ppl_ratio is not None
    top1 = record.metrics.top1_agreement
    assert record.broken.startswith(f"collapsed: top-1 agreement {top1:.2f}")
    assert record.broken.endswith("likely cause: low rank: 5% of full rank kept")
    assert json.loads(json.dumps(record.to_dict()))["broken"] == record.broken


def _record(**changes) -> RunRecord:
    fields = dict(
        model="m", recipe={"format": 1, "passes": []}, recipe_name="original", bytes=1000,
        bytes_by_component={}, prefill_ms=1.0, decode_ms_per_token=2.0, tokens_per_s=500.0,
        ppl=20.0, ppl_ci95=1.0, top1_agreement=1.0, mean_kl=0.0, device="cpu", threads=2,
        bench_protocol="b", eval_protocol="e", run_id="orig", ppl_ratio=1.0,
    )  # fmt: skip
    return RunRecord.from_dict(fields | changes)


def test_cli_and_report_show_the_flag_first(capsys):
    from core.cli.record_text import print_record
    from core.export.report import build_report, render_html

    cause = broken_cause(0.1, 9.0, _recipe({"pass": "low_rank", "version": 1, "rank_ratio": 0.1}))
    wreck = _record(
        recipe=Recipe((REGISTRY["low_rank"](0.1),)).to_dict(),
        recipe_name="low rank",
        run_id="wreck",
        ppl=180.0,
        top1_agreement=0.1,
        ppl_ratio=9.0,
        broken=cause,
    )
    print_record(wreck)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"  BROKEN: {cause}"
    print_record(_record())
    assert "BROKEN" not in capsys.readouterr().out

    report = build_report(
        "m", Recipe((REGISTRY["low_rank"](0.1),)), [_record(), wreck], None, {}, ("report",), {}
    )
    page = render_html(report)
    assert f"<p class='broken'>BROKEN: {html.escape(cause)}</p>" in page
    assert page.index("BROKEN") < page.index("Exported configuration against the original")
    healthy = build_report("m", Recipe(), [_record()], None, {}, ("report",), {})
    assert "class='broken'" not in render_html(healthy)


def test_export_summary_names_the_flags(tmp_path):
    from types import SimpleNamespace

    from core.export.formats import ExportInputs
    from core.export.report_format import write_report_files

    recipe = Recipe((REGISTRY["low_rank"](0.1),))
    wreck = _record(
        recipe=recipe.to_dict(), run_id="w", broken="collapsed: ...", machine_busy="other..."
    )
    inputs = ExportInputs(SimpleNamespace(source="m"), None, recipe, (_record(), wreck), "w")
    summary = write_report_files(inputs, tmp_path).summary
    assert summary.endswith("; the exported run is flagged BROKEN; it was timed on a busy machine)")
    assert json.loads((tmp_path / "report.json").read_text())["exported_run"]["broken"]
    healthy = ExportInputs(SimpleNamespace(source="m"), None, Recipe(), (_record(),), "orig")
    assert "BROKEN" not in write_report_files(healthy, tmp_path).summary


def test_eval_of_a_nan_model_says_broken_and_prints_strict_json(tiny_llama_dir, tmp_path):
    """A NaN perplexity is named in words, and ``--json`` stays parseable
    (Python writes NaN as a bare word that strict JSON parsers refuse)."""
    from tests.test_cli import run_cli
    from tests.tiny_models import save_nan_copy

    folder = save_nan_copy(tiny_llama_dir, tmp_path / "nan-model")
    args = ("eval", "-m", str(folder), "--windows", "1", "--context-tokens", "32")
    plain = run_cli(*args)
    assert plain.returncode == 0, plain.stderr
    assert "BROKEN: perplexity is not a number" in plain.stdout
    dumped = run_cli(*args, "--json")
    assert dumped.returncode == 0, dumped.stderr
    report = json.loads(dumped.stdout, parse_constant=lambda word: pytest.fail(word))
    assert report["perplexity"]["ppl"] is None
    assert "not a number" in report["problem"]


def test_a_factorisation_of_weights_that_are_not_numbers_is_one_line(tiny_llama_dir, tmp_path):
    """SVD of NaN weights raised torch's LinAlgError with a traceback; it is one
    line naming the pass, and the load had already said the weights are not numbers."""
    from core.errors import UnsupportedModelError
    from core.passes.recipe import apply_recipe
    from tests.tiny_models import save_nan_copy

    loaded = load_model(str(save_nan_copy(tiny_llama_dir, tmp_path / "nan")), device="cpu")
    assert loaded.description.non_finite_weights > 0
    assert any("NaN or infinite" in note for note in loaded.description.notes)
    with pytest.raises(UnsupportedModelError, match="linear algebra failed") as error:
        apply_recipe(loaded, Recipe((REGISTRY["low_rank"](0.3),)))
    assert str(error.value).startswith("low_rank: ") and "\n" not in str(error.value)


def test_healthy_weights_say_nothing_at_load(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    assert loaded.description.non_finite_weights == 0
    assert not any("NaN" in note for note in loaded.description.notes)


def test_dropping_a_layer_of_a_shallow_model_is_named_before_int8():
    """A sweep saw "drop 1 layer + int8" on a 2-layer model collapse while the
    cause named was int8: dropped layers counted 0.1 each, whatever the depth."""
    recipe = {"passes": [{"pass": "prune_layers", "count": 1}, {"pass": "int8_weight_only"}]}
    named_first = [likely_cause(recipe, layers=n).split(", or else ")[0] for n in (2, 30)]
    assert named_first == ["1 whole layer dropped"] * 2
    # depth unknown: the old rule of thumb
    assert likely_cause(recipe) == "int8 weights, or else 1 whole layer dropped"
    heavy = {"passes": [{"pass": "prune_layers", "count": 1}, {"pass": "int4_weight_only"}]}
    assert likely_cause(heavy, layers=30).startswith("int4 without calibration")
