"""A sensitivity map is stored cell by cell: a cancelled map resumes where
it stopped (in the job and on the command line), a damaged line or another
model's cells are not read, and measuring afresh deletes nothing."""

from __future__ import annotations

import json

import pytest

from core.errors import Cancelled
from core.jobs.sensitivity import (
    SensitivityCell,
    SensitivityMap,
    SensitivityRequest,
    SensitivityResumed,
    sensitivity,
    store_key,
)
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.progress import CancelToken
from core.results.sensitivity_store import SensitivityStore


@pytest.fixture(scope="module")
def original(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def _request(original, store, probe=None, parts=("attention", "mlp")):
    return SensitivityRequest(original, probe or R["int8_weight_only"](), parts, 1, store=store)


def test_a_cancelled_map_resumes_with_only_the_missing_cells(original, tmp_path):
    store = SensitivityStore(tmp_path / "sensitivity.jsonl")
    uninterrupted = list(sensitivity(_request(original, None)))[-1]
    cancel, first = CancelToken(), []
    with pytest.raises(Cancelled):
        for event in sensitivity(_request(original, store), cancel=cancel):
            first.append(event)
            if len(first) == 3:
                cancel.cancel()
    assert len(store.path.read_text().splitlines()) == 3  # each cell kept as it came
    events = list(sensitivity(_request(original, store)))
    resumed, *fresh, result = events
    assert isinstance(resumed, SensitivityResumed) and len(resumed.cells) == 3
    assert [(c.layer, c.part) for c in fresh] == [(1, "mlp")]  # only the missing one
    assert fresh[0].done == fresh[0].total == 4
    assert isinstance(result, SensitivityMap) and result.resumed == 3
    assert [(c.layer, c.part) for c in result.cells] == [
        (c.layer, c.part) for c in uninterrupted.cells
    ]
    for a, b in zip(result.cells, uninterrupted.cells, strict=True):
        assert a.mean_kl == pytest.approx(b.mean_kl) and a.ppl_ratio == pytest.approx(b.ppl_ratio)
    again = list(sensitivity(_request(original, store)))
    assert not any(isinstance(e, SensitivityCell) for e in again)  # all stored: nothing to run


def test_another_probe_or_protocol_is_another_map(original, tmp_path):
    store = SensitivityStore(tmp_path / "sensitivity.jsonl")
    list(sensitivity(_request(original, store)))
    int4 = _request(original, store, R["int4_weight_only"](32, "rtn"))
    assert not isinstance(next(sensitivity(int4)), SensitivityResumed)
    keys = {
        store_key(_request(original, store)),
        store_key(int4),
        store_key(SensitivityRequest(original, R["int8_weight_only"](), (), 2)),  # 2 windows
    }
    assert len(keys) == 3
    # Whole-layer cells of the same probe and protocol share the key, not the cells.
    whole = _request(original, store, parts=())
    assert store_key(whole) == store_key(_request(original, store))
    assert not isinstance(next(sensitivity(whole)), SensitivityResumed)


def test_damaged_lines_are_skipped_and_a_reset_forgets_without_deleting(tmp_path):
    store = SensitivityStore(tmp_path / "sensitivity.jsonl")
    cell = {"layer": 3, "part": "", "mean_kl": 0.5, "ppl_ratio": 1.1}
    store.append("k", {}, {}, {}, cell)
    store.append("other", {}, {}, {}, {**cell, "mean_kl": 9.0})
    with open(store.path, "a") as f:
        f.write('{"key": "k", "cell": {"layer": 4, "part": "", "mean')  # a kill mid-write
    assert store.cells("k") == {(3, ""): {"mean_kl": 0.5, "ppl_ratio": 1.1}}
    with open(store.path, "a") as f:
        f.write("\n")
    store.reset("k")
    assert store.cells("k") == {} and store.cells("other")[(3, "")]["mean_kl"] == 9.0
    store.append("k", {}, {}, {}, {**cell, "mean_kl": 0.25})
    assert store.cells("k")[(3, "")]["mean_kl"] == 0.25
    assert len(store.path.read_text().splitlines()) == 5  # nothing rewritten


def test_the_cli_resumes_automatically_and_fresh_measures_again(
    tiny_llama_dir, capsys, tmp_path, monkeypatch
):
    from core.cli.main import main

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    argv = ["sensitivity", "--model", str(tiny_llama_dir), "--device", "cpu", "--windows", "1"]
    argv += ["--probe", "int8_weight_only", "--parts", "attention,mlp", "--json"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "read back" not in first.err and first.err.count("KL") == 4
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "4 of 4 cells read back" in second.err and "KL" not in second.err
    assert json.loads(second.out)["cells"] == json.loads(first.out)["cells"]
    assert json.loads(second.out)["resumed"] == 4
    assert main([*argv, "--fresh"]) == 0
    assert capsys.readouterr().err.count("KL") == 4


def test_cells_of_the_wrong_types_or_numbers_are_skipped(tmp_path):
    store = SensitivityStore(tmp_path / "sensitivity.jsonl")
    cell = {"layer": 3, "part": "", "mean_kl": 0.5, "ppl_ratio": 1.1}
    store.append("k", {}, {}, {}, cell)
    with open(store.path, "ab") as f:
        for bad in (
            {"mean_kl": 10**400},  # float() overflows
            {"mean_kl": "nan"},
            {"ppl_ratio": "inf"},
            {"layer": 1.5},
            {"layer": -1},
            {"layer": True},
            {"part": ["q"]},
        ):
            f.write(json.dumps({"key": "k", "cell": {**cell, "layer": 4} | bad}).encode() + b"\n")
        f.write(b'{"key": "k", "cell": {"layer": 5, "part": "\xff"}}\n')  # not UTF-8
    assert store.cells("k") == {(3, ""): {"mean_kl": 0.5, "ppl_ratio": 1.1}}


def test_a_probe_with_its_own_layers_or_parts_is_refused_before_loading(tmp_path, capsys):
    """The map sets each cell's layer and part: a probe's own scope was silently ignored."""
    from core.cli.main import main

    never = str(tmp_path / "never-loaded")
    for probe in ("int4_weight_only:layers=0", "int8_weight_only:parts=q"):
        assert main(["sensitivity", "-m", never, "--probe", probe]) == 2
        err = capsys.readouterr().err
        assert "takes no layers or parts of its own" in err and err.count("\n") == 1


def test_another_text_is_another_map_and_the_news_key_is_unchanged(original, tmp_path):
    """The map follows the evaluation text chosen for runs (the window used
    its own settings and scored news whatever was chosen)."""
    from dataclasses import replace

    from core.jobs.experiment import ExperimentSettings

    store = SensitivityStore(tmp_path / "sensitivity.jsonl")
    news = _request(original, store, parts=())
    pydoc = replace(news, settings=ExperimentSettings(text_source="pydoc"))
    assert store_key(news) == store_key(replace(news, settings=ExperimentSettings()))
    assert store_key(pydoc) != store_key(news)
    result = list(sensitivity(pydoc))[-1]
    assert "Python" in result.protocol and "news" not in result.protocol.lower()
