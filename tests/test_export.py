"""Export: every pass (and some chains) on tiny GPT-2 and Llama models goes
to a Hugging Face folder and comes back with bit-identical logits and the
same measured bytes; the folders that claim to be plain load in
transformers alone; writes are atomic; the report holds only measured
numbers; the CLI exports from a recipe file or the results store."""

import hashlib
import json

import pytest
import torch

from core.atomic_folder import ExportTargetError
from core.errors import Cancelled
from core.export.hf_folder import MANIFEST, OWN_WEIGHTS, PLAIN_WEIGHTS
from core.export.marker import MARKER_NAME
from core.jobs.write_export import ExportResult, run_export
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY
from core.passes.recipe import Recipe, apply_recipe
from core.progress import CancelToken
from core.results.store import RunRecord
from tests.test_passes import ALL_PASSES, calibration_for

R = REGISTRY
PASSES = [
    *ALL_PASSES,
    R["cast"]("float16"),  # fp16 as well: its own dtype on reload
    R["prune_wanda"](0.5),
    R["prune_sparsegpt"](0.5, "2:4"),
    R["int8_head"](),
    R["low_rank_aware"](0.3),
]
CHAINS = [
    (R["prune_mlp"](0.25), R["int8_weight_only"]()),
    (R["prune_layers"](1), R["prune_heads"](0.5), R["cast"]("bfloat16")),
    (R["low_rank"](0.5), R["int4_weight_only"](32, "rtn")),
    (R["prune_unstructured"](0.5, "per_layer"), R["int8_dynamic"](0.0)),
    (R["int8_head"]("head"), R["int4_weight_only"](64, "rtn")),
    (R["int4_weight_only"](32, "rtn"), R["int8_head"](bits=4, group_size=32)),
]
# Which exports transformers loads by itself (the rest need our loader):
# shapes and classes it builds from the config, one float dtype.
PLAIN = {
    "cast",
    "prune_unstructured",
    "prune_wanda",
    "prune_sparsegpt",
    "prune_mlp",
    "prune_layers",
}
PLAIN_ONLY_LLAMA = {"prune_heads"}  # GPT-2 derives head_dim from n_embd / n_head


def test_every_registered_pass_is_covered():
    # heal needs a run's training (a job) and a pruning before it: tests/test_heal.py
    # exports a healed run and checks the rebuild against the measured weights.
    assert {p.name for p in PASSES} | {"heal"} == set(REGISTRY)


@pytest.fixture
def loaded(tiny_dir):
    return load_model(str(tiny_dir), device="cpu")


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def expected_plain(recipe, model_type):
    return all(
        p.name in PLAIN or (p.name in PLAIN_ONLY_LLAMA and model_type == "llama")
        for p in recipe.passes
    )


def export_and_check(loaded, recipe, out):
    calibration = calibration_for(loaded)
    compressed = apply_recipe(loaded, recipe, calibration)
    events = list(run_export(loaded, recipe, out, ("hf",), compressed=compressed))
    assert isinstance(events[-1], ExportResult)
    manifest = json.loads((out / MANIFEST).read_text())
    ids = calibration[0].view(1, -1)
    reference = logits(compressed.loaded.model, ids)

    back = load_model(str(out), device="cpu")
    assert torch.equal(logits(back.model, ids), reference)  # bit-identical
    size = measure_size(compressed.loaded.model)
    assert measure_size(back.model) == size
    assert manifest["tensor_bytes"] == size.total_bytes  # the file holds what we count
    for name in ("recipe.json", "environment.json", "config.json", "generation_config.json"):
        assert (out / name).is_file()
    assert Recipe.from_json((out / "recipe.json").read_text()) == recipe
    assert json.loads((out / "environment.json").read_text())["torch"] == torch.__version__
    return compressed, manifest, ids, reference


@pytest.mark.parametrize("recipe", [Recipe((p,)) for p in PASSES] + [Recipe(c) for c in CHAINS])
def test_export_loads_back_identical(loaded, recipe, tmp_path):
    from transformers import AutoModelForCausalLM

    model_type = loaded.model.config.model_type
    out = tmp_path / "export"
    _, manifest, ids, reference = export_and_check(loaded, recipe, out)

    plain = expected_plain(recipe, model_type)
    assert (manifest["loader"] == "transformers") == plain, manifest["not_plain_because"]
    if plain:
        assert (out / PLAIN_WEIGHTS).is_file() and not (out / OWN_WEIGHTS).exists()
        native = AutoModelForCausalLM.from_pretrained(out, dtype="auto").eval()
        assert torch.equal(logits(native, ids), reference)
    else:
        # No model.safetensors: plain transformers refuses loudly instead of
        # filling the modules it does not know with random weights.
        assert (out / OWN_WEIGHTS).is_file() and not (out / PLAIN_WEIGHTS).exists()
        with pytest.raises(OSError):
            AutoModelForCausalLM.from_pretrained(out)


def _folder_digest(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def test_export_leaves_original_and_its_files_untouched(tiny_llama_dir, tmp_path):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    files = _folder_digest(tiny_llama_dir)
    recipe = Recipe((R["prune_layers"](1), R["int8_weight_only"]()))
    list(run_export(loaded, recipe, tmp_path / "out", ("hf",)))
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _folder_digest(tiny_llama_dir) == files


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


def test_failure_mid_export_leaves_nothing(loaded, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full (simulated)")

    # hf_folder imports save_file when it writes, so this is the one it calls.
    monkeypatch.setattr("safetensors.torch.save_file", broken_save)
    # one line naming the system's reason, not the writer's traceback
    with pytest.raises(ExportTargetError, match="disk full"):
        list(run_export(loaded, Recipe((R["int8_weight_only"](),)), tmp_path / "out"))
    assert _leftovers(tmp_path) == []


def test_failure_in_a_later_format_removes_the_earlier_ones(loaded, tmp_path, monkeypatch):
    def broken_report(*args, **kwargs):
        raise RuntimeError("report failed (simulated)")

    monkeypatch.setattr("core.export.report.render_html", broken_report)
    with pytest.raises(RuntimeError, match="report failed"):
        list(run_export(loaded, Recipe(), tmp_path / "out", ("hf", "report")))
    assert _leftovers(tmp_path) == []


def test_cancel_leaves_nothing(loaded, tmp_path):
    cancel = CancelToken()

    def progress(event):
        if "Writing" in event.stage:
            cancel.cancel()

    with pytest.raises(Cancelled):
        list(
            run_export(
                loaded, Recipe((R["cast"](),)), tmp_path / "out", progress=progress, cancel=cancel
            )
        )
    assert _leftovers(tmp_path) == []


def test_existing_target_refused_unless_overwrite(loaded, tmp_path):
    out = tmp_path / "out"  # an earlier export: overwrite replaces only those
    list(run_export(loaded, Recipe(), out, ("report",)))
    with pytest.raises(ExportTargetError, match="already exists"):
        list(run_export(loaded, Recipe(), out, ("hf",)))
    assert _leftovers(out) == [MARKER_NAME, "recipe.json", "report.html", "report.json"]

    list(run_export(loaded, Recipe(), out, ("hf",), overwrite=True))
    assert not (out / "report.html").exists() and (out / PLAIN_WEIGHTS).is_file()
    assert _leftovers(tmp_path) == ["out"]  # the old folder is gone, no temp left


def test_target_inside_source_folder_refused(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    files = _folder_digest(tiny_gpt2_dir)
    for target in (tiny_gpt2_dir / "export", tiny_gpt2_dir):
        with pytest.raises(ExportTargetError, match="source model folder"):
            list(run_export(loaded, Recipe(), target, ("hf",), overwrite=True))
    assert _folder_digest(tiny_gpt2_dir) == files
    assert not (tiny_gpt2_dir / "export").exists()


def _record(loaded, recipe, run_id, nbytes, ppl, decode=5.0, top1=None):
    return RunRecord.from_dict(dict(
        model=loaded.source,
        recipe=recipe.to_dict(),
        recipe_name=recipe.name,
        bytes=nbytes,
        bytes_by_component={},
        prefill_ms=12.0,
        decode_ms_per_token=decode,
        tokens_per_s=1000 / decode,
        ppl=ppl,
        ppl_ci95=None if ppl is None else 1.5,
        top1_agreement=top1,
        mean_kl=None,
        device="cpu",
        threads=2,
        bench_protocol="prompt 64 tokens, 32 new",
        eval_protocol="quick: 10 windows" if ppl else "",
        run_id=run_id,
    ))  # fmt: skip


def test_report_holds_measured_numbers_only(loaded, tmp_path):
    import base64
    import re

    recipe = Recipe((R["int8_weight_only"](),))
    records = [
        _record(loaded, Recipe(), "a", 400_000, 20.0, decode=8.0),
        _record(loaded, recipe, "b", 200_000, 20.5, decode=6.0, top1=0.97),
        _record(loaded, Recipe((R["cast"](),)), "c", 210_000, None),  # never evaluated
        RunRecord.from_dict({**_record(loaded, Recipe(), "x", 1, 1.0).to_dict(), "model": "other"}),
    ]
    out = tmp_path / "out"
    list(run_export(loaded, recipe, out, ("report",), records=records))
    assert _leftovers(out) == [MARKER_NAME, "recipe.json", "report.html", "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert report["exported_run"]["run_id"] == "b" and report["original_run"]["run_id"] == "a"
    assert [r["run_id"] for r in report["runs"]] == ["a", "b", "c"]  # this model only
    rows = {row["metric"]: row for row in report["comparison"]}
    assert rows["bytes"]["ratio"] == pytest.approx(0.5)
    assert rows["decode_ms_per_token"]["ratio"] == pytest.approx(0.75)
    assert rows["top1_agreement"]["ratio"] is None  # the original has none recorded
    assert rows["mean_kl"]["exported"] is None
    assert report["pareto"]["bytes_vs_ppl"] == {"runs_charted": 2, "front_run_ids": ["b", "a"]}
    assert any("--recipe recipe.json" in c for c in report["reproduce"]["commands"])

    page = (out / "report.html").read_text()
    assert "not measured" in page and "1 run(s) without both numbers" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # self-contained
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)


def test_report_without_records_says_not_measured(loaded, tmp_path):
    out = tmp_path / "out"
    list(run_export(loaded, Recipe((R["cast"](),)), out, ("hf", "report")))
    report = json.loads((out / "report.json").read_text())
    assert report["exported_run"] is None and report["original_run"] is None
    assert all(row["exported"] is None for row in report["comparison"])
    assert report["exported"]["hf"]["loader"] == "transformers"
    page = (out / "report.html").read_text()
    assert page.count("not measured") >= 14 and "data:image/png" not in page


def test_unknown_format_refused(loaded, tmp_path):
    with pytest.raises(ExportTargetError, match="unknown export format pdf"):
        list(run_export(loaded, Recipe(), tmp_path / "out", ("hf", "pdf")))
    assert _leftovers(tmp_path) == []


def _cli(argv, capsys):
    from core.cli.main import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_export_from_recipe_and_store(tiny_llama_dir, tmp_path, capsys, monkeypatch):
    from core.results.store import ResultsStore

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    recipe = Recipe((R["prune_mlp"](0.25), R["int8_weight_only"]()))
    path = tmp_path / "recipe.json"
    path.write_text(recipe.to_json())
    model = str(tiny_llama_dir)
    out = tmp_path / "out"
    code, stdout, err = _cli(
        ["export", "--model", model, "--recipe", str(path), "--out", str(out), "--json"], capsys
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["formats"] == ["hf", "report"] and "report.html" in result["files"]
    assert load_model(str(out), device="cpu").description.layers == 2

    code, _, err = _cli(
        ["export", "--model", model, "--recipe", str(path), "--out", str(out)], capsys
    )
    assert code == 2 and "already exists" in err

    loaded = load_model(model, device="cpu")
    # A run whose bytes are not the rebuilt model's is not that model: refused, nothing written.
    ResultsStore().append(_record(loaded, recipe, "", 100, 30.0))
    last = ["export", "--model", model, "--last", "--out", str(tmp_path / "o2"), "--json"]
    code, _, err = _cli(last, capsys)
    assert code == 2 and "not the 100 run" in err and not (tmp_path / "o2").exists()

    measured = int(result["details"]["hf"]["measured_bytes"])
    stored = ResultsStore().append(_record(loaded, recipe, "", measured, 30.0))
    code, stdout, err = _cli(last, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "o2" / "report.json").read_text())
    assert report["exported_run"]["run_id"] == stored.run_id

    code, _, err = _cli(
        ["export", "--model", model, "--run", "nope", "--out", str(tmp_path / "o3")], capsys
    )
    assert code == 2 and "no run 'nope'" in err
    assert not (tmp_path / "o3").exists()


@pytest.mark.real_model
def test_reimported_default_model_export_keeps_perplexity(tmp_path):
    from dataclasses import replace

    from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows

    original = load_model("default", device="cpu")
    recipe = Recipe((R["int8_weight_only"](),))
    compressed = apply_recipe(original, recipe)
    list(run_export(original, recipe, tmp_path / "out", ("hf",), compressed=compressed))
    back = load_model(str(tmp_path / "out"), device="cpu")

    protocol = replace(QUICK_PROTOCOL, quick_windows=3)
    windows = perplexity_windows(original.tokenizer, protocol)
    before = compute_perplexity(
        compressed.loaded.model, original.tokenizer, protocol, None, windows
    )
    after = compute_perplexity(back.model, back.tokenizer, protocol, None, windows)
    assert after.ppl == pytest.approx(before.ppl, rel=1e-3)
    assert measure_size(back.model) == measure_size(compressed.loaded.model)
