"""`workbench search`: bad input refused in one line (exit 2) before any
model loads; a search on a tiny model prints its account as JSON and
stores what it measured, and the next search reuses it."""

import json

import pytest

from core.cli.main import main
from core.results.store import ResultsStore

TINY = [
    "--threads", "1", "--workers", "1", "--text", "pydoc",
    "--eval-context", "64", "--eval-windows", "3",
    "--calibration-windows", "4", "--calibration-length", "64",
    "--families", "uniform", "--int4-groups", "32", "--int4-methods", "rtn",
]  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--max-bytes-ratio", "0"], "--max-bytes-ratio"),
        (["--max-kl", "nan"], "--max-kl"),
        (["--min-accuracy", "2"], "--min-accuracy"),
        (["--objective", "cheapest"], "--objective"),
        (["--budget-s", "0"], "--budget-s"),
        (["--families", "uniform,everything"], "families"),
        (["--int4-methods", "magic"], "magic"),
        (["--int4-groups", "12"], "group sizes"),
        (["--int4-groups", "x"], "int4-groups"),
        (["--ray", " "], "--ray"),
        (["--ray", "nonsense"], "HOST:PORT"),
        (["--ray", "127.0.0.1:1"], "no Ray cluster at '127.0.0.1:1'"),
        (["--ray", "auto", "--workers", "2"], "not allowed with"),
    ],
)
def test_bad_input_is_refused_before_loading(tmp_path, capsys, arguments, says):
    never = str(tmp_path / "never-loaded")  # loading it would fail differently
    assert main(["search", "--model", never, *arguments]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "never-loaded" not in err


def test_a_search_prints_json_stores_its_runs_and_the_next_reuses_them(
    tiny_llama_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    argv = ["search", "-m", str(tiny_llama_dir), *TINY, "--max-bytes-ratio", "0.3", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    best = data["best"]
    assert best["bytes"] <= data["byte_limit"] == int(0.3 * data["original_bytes"])
    assert best["label"] == "int8 + int8 head" and best["ppl_increase_pct"] is not None
    by_label = {c["label"]: c for c in data["candidates"]}
    assert by_label["int8"]["rejected"]["stage"] == "size"
    assert "MB > limit" in by_label["int8"]["rejected"]["reason"]
    stored = ResultsStore().load()
    assert {r.run_id for r in stored} == {data["original"]["run_id"], best["run_id"]}

    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["original"]["reused"] and again["best"]["run_id"] == best["run_id"]
    assert again["counts"]["measured"] == 0 and again["counts"]["reused"] == 1
    assert len(ResultsStore().load()) == 2  # nothing measured twice


def test_a_limit_the_model_kind_cannot_measure_is_refused(tiny_classifier_dir, capsys):
    argv = ["search", "-m", str(tiny_classifier_dir), "--threads", "1"]
    assert main([*argv, "--max-ppl-increase", "5", "--objective", "accuracy"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "does not measure ppl" in errors[0]  # after the load lines


def test_a_classifier_is_searched_for_accuracy_by_default_and_its_best_says_so(
    tiny_classifier_dir, tmp_path, monkeypatch, capsys
):
    """With no --objective a classifier was refused ("objective ppl: this model
    kind does not measure it"), and its best printed neither accuracy nor latency."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    argv = ["search", "-m", str(tiny_classifier_dir), *TINY[:4], "--budget-s", "120"]
    argv += ["--families", "uniform", "--int4-groups", "32", "--int4-methods", "rtn"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("search: highest accuracy")
    assert "  accuracy " in out and "latency " in out and "ms per review" in out
    assert "  proxies: no proxy for this model kind\n" in out  # no dangling "; "


@pytest.mark.parametrize("option", ["--eval-context", "--calibration-length"])
def test_a_length_past_the_models_context_is_refused_not_cut(tiny_llama_dir, capsys, option):
    """eval and distill refused it; search cut it to 256 without a word (sweep nine)."""
    assert main(["search", "-m", str(tiny_llama_dir), option, "100000"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {option} 100,000: longer than the model's context (256 tokens)"
    )


def test_a_summary_whose_best_is_the_original_says_so(capsys):
    from core.cli.search import print_summary

    best = {
        "label": "original", "run_id": "r", "bytes": 1e6, "bytes_ratio": 1.0,
        "recipe": {"format": 1, "passes": []}, "metrics": {}, "bench_protocol": "b",
    }  # fmt: skip
    data = {
        "objective": "ppl", "limits": "none", "scoring": "", "proxy": "", "counts": {},
        "stopped": "budget", "elapsed_s": 1, "best": best,
    }  # fmt: skip
    print_summary(data)
    assert "no compressed configuration did better than the original" in capsys.readouterr().out
    print_summary({**data, "best": {**best, "recipe": {"passes": [{"pass": "cast"}]}}})
    assert "did better than the original" not in capsys.readouterr().out
