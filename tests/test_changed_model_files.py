"""Numbers of a model folder changed since are not reused as this model's: a
search does not take its stored runs, a sensitivity map is measured anew,
and a report or a printed comparison does not set the run beside an
original measured on the old files."""

from __future__ import annotations

import json
from types import SimpleNamespace

from core.jobs.sensitivity import SensitivityRequest, store_key
from core.models.loading import load_model
from core.models.source_identity import DIGEST_KEY, folder_digest, same_files
from core.passes import REGISTRY as R
from core.search.reuse import SETTINGS_KEY, MeasuredRuns
from tests.test_export_identity import _cli
from tests.tiny_models import save_tiny_model


def _compress(model, capsys, *passes):
    argv = ["compress", "--model", str(model), "--no-eval", "--device", "cpu", "--json"]
    for spec in passes:
        argv += ["--pass", spec]
    code, out, err = _cli(argv, capsys)
    assert code == 0, err
    return json.loads(out)


def test_same_files_takes_runs_without_a_digest_on_their_name():
    assert same_files({DIGEST_KEY: "a"}, "a")
    assert not same_files({DIGEST_KEY: "a"}, "b")
    assert same_files({}, "b")  # stored before digests existed
    assert same_files({DIGEST_KEY: "a"}, "")  # a model without a folder


def test_a_search_does_not_reuse_a_run_of_files_changed_since():
    def run(digest):
        artifact = {SETTINGS_KEY: "k", **({DIGEST_KEY: digest} if digest else {})}
        return SimpleNamespace(
            model="/m", recipe={}, backend="torch", artifact=artifact,
            bench_protocol="b", eval_protocol="e", device="cpu", threads=2,
        )  # fmt: skip

    old, unknown, new = run("old"), run(None), run("new")
    assert MeasuredRuns([new, old], "/m", "k", "old").find({}, "torch", None) is old
    assert MeasuredRuns([old], "/m", "k", "new").find({}, "torch", None) is None
    assert MeasuredRuns([old, unknown], "/m", "k", "new").find({}, "torch", None) is unknown


def test_a_sensitivity_map_of_changed_files_or_another_dtype_has_another_key(private_store):
    folder = save_tiny_model("llama", private_store / "m")
    probe = R["int8_weight_only"]()

    def key(dtype="float32"):
        loaded = load_model(str(folder), device="cpu", dtype=dtype)
        return store_key(SensitivityRequest(loaded, probe, (), 1))

    before = key()
    assert key() == before  # the same files, the same map
    assert key("bfloat16") != before
    save_tiny_model("llama", folder, seed=5)  # same shapes, other weights
    assert key() != before


def test_the_report_does_not_compare_with_an_original_of_the_old_files(private_store, capsys):
    model = save_tiny_model("llama", private_store / "m")
    stale = _compress(model, capsys)  # the original, measured on the first files
    save_tiny_model("llama", model, seed=5)
    run = _compress(model, capsys, "prune_mlp:fraction=0.25")
    assert run["artifact"][DIGEST_KEY] == folder_digest(model) != stale["artifact"][DIGEST_KEY]
    code, out, err = _cli(
        ["export", "--model", str(model), "--last", "--out", str(private_store / "out"),
         "--device", "cpu", "--format", "report"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((private_store / "out" / "report.json").read_text())
    assert report["original_run"] is None
    assert stale["run_id"] not in json.dumps(report)

    fresh = _compress(model, capsys)  # measured again: the comparison comes back
    code, _, err = _cli(
        ["export", "--model", str(model), "--run", run["run_id"],
         "--out", str(private_store / "again"), "--device", "cpu", "--format", "report"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((private_store / "again" / "report.json").read_text())
    assert report["original_run"]["run_id"] == fresh["run_id"]


def test_a_printed_comparison_names_only_an_original_of_the_same_files(private_store, capsys):
    model = save_tiny_model("llama", private_store / "m")
    stale = _compress(model, capsys)
    save_tiny_model("llama", model, seed=5)
    code, out, err = _cli(
        ["compress", "--model", str(model), "--no-eval", "--device", "cpu",
         "--pass", "prune_mlp:fraction=0.25"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert stale["run_id"] not in out and "the original's" not in out


def test_the_sensitivity_key_reads_no_model_bytes(private_store, monkeypatch):
    """The window computes it on its own thread when a model loads: hashing a
    large model's files there would freeze the window for seconds."""
    from core.models import source_identity

    folder = save_tiny_model("llama", private_store / "m")
    loaded = load_model(str(folder), device="cpu")

    def no_hashing(*args):
        raise AssertionError("the model's files were hashed")

    monkeypatch.setattr(source_identity, "_digest", no_hashing)
    assert store_key(SensitivityRequest(loaded, R["int8_weight_only"](), (), 1))
