"""RunRecord's task-specific metrics part: each kind's record carries only
its own metrics, round-trips through runs.jsonl, and lines written before the
split (metrics at the top level) still load as the right kind."""

import json

import pytest

from core.results.metrics import ClassifierMetrics, LMMetrics
from core.results.store import ResultsStore, RunRecord

# Lines as earlier versions wrote them (copied from a runs.jsonl of the time).
OLD_LM_LINE = {
    "model": "default", "recipe": {"version": 1, "passes": []}, "recipe_name": "original",
    "bytes": 538090944, "bytes_by_component": {"embeddings": 113246208},
    "prefill_ms": 120.5, "decode_ms_per_token": 56.1, "tokens_per_s": 17.8, "ppl": 25.49,
    "ppl_ci95": 1.2, "top1_agreement": 1.0, "mean_kl": 0.0, "device": "cpu", "threads": 2,
    "bench_protocol": "p", "eval_protocol": "e", "notes": [], "created": 1764500000.0,
}  # fmt: skip
OLD_CLASSIFIER_LINE = {
    "model": "demo-classifier", "recipe": {"version": 1, "passes": []},
    "recipe_name": "original", "bytes": 90000000, "bytes_by_component": {},
    "prefill_ms": None, "decode_ms_per_token": None, "tokens_per_s": None, "ppl": None,
    "ppl_ci95": None, "top1_agreement": None, "mean_kl": None, "device": "cpu", "threads": 2,
    "bench_protocol": "batch 1", "eval_protocol": "test split", "notes": [], "run_id": "x",
    "task": "sequence-classification", "latency_ms": 8.5, "latency_ms_p10": 8.0,
    "latency_ms_p90": 9.0, "examples_per_s": 117.6, "accuracy": 0.88,
    "accuracy_ci95_low": 0.85, "accuracy_ci95_high": 0.9, "examples": 872, "agreement": 1.0,
    "broken": "", "machine_load": {}, "machine_busy": "", "artifact": {},
}  # fmt: skip


def _record(metrics) -> RunRecord:
    return RunRecord("m", {"passes": []}, "original", 1, {}, metrics, "cpu", 2, "p", "e")


def test_old_lines_load_as_their_kind(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    lines = [OLD_LM_LINE | {"from_the_future": 1}, OLD_CLASSIFIER_LINE]
    store.path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"cut sh')
    lm, classifier = store.load()
    assert lm.task == "causal-lm" and isinstance(lm.metrics, LMMetrics)
    assert lm.metrics.ppl == 25.49 and lm.metrics.decode_ms_per_token == 56.1
    assert lm.metric("accuracy") is None and lm.broken == "" and lm.run_id == ""
    assert classifier.task == "sequence-classification"
    assert classifier.metrics == ClassifierMetrics(
        latency_ms=8.5, latency_ms_p10=8.0, latency_ms_p90=9.0, examples_per_s=117.6,
        accuracy=0.88, accuracy_ci95_low=0.85, accuracy_ci95_high=0.9, examples=872,
        agreement=1.0,
    )  # fmt: skip
    assert classifier.metric("ppl") is None and not hasattr(classifier.metrics, "ppl")


@pytest.mark.parametrize(
    "metrics",
    [
        LMMetrics(prefill_ms=1.0, decode_ms_per_token=2.0, ppl=3.0, decode_ms_p10=1.5),
        ClassifierMetrics(latency_ms=4.0, accuracy=0.5, examples=10),
    ],
)
def test_records_round_trip_with_only_their_own_metrics(tmp_path, metrics):
    store = ResultsStore(tmp_path / "runs.jsonl")
    stored = store.append(_record(metrics))
    line = json.loads(store.path.read_text())
    assert line["metrics"] == {k: v for k, v in vars(metrics).items()}
    assert line["task"] == metrics.task and "ppl" not in line and "latency_ms" not in line
    (back,) = store.load()
    assert back == stored and back.metrics == metrics and back.run_id


def test_a_line_of_an_unknown_task_is_skipped_not_fatal(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    good = _record(LMMetrics(ppl=2.0)).to_dict()
    store.path.write_text(json.dumps(good | {"task": "image-generation"}) + "\n[1, 2]\n")
    store.append(_record(LMMetrics(ppl=5.0)))
    assert [r.metrics.ppl for r in store.load()] == [5.0]


def _spoiled(**changes) -> str:
    line = _record(LMMetrics(ppl=2.0, decode_ms_per_token=3.0)).to_dict()
    for key, value in changes.items():
        if key.startswith("metrics_"):
            line["metrics"][key[len("metrics_") :]] = value
        else:
            line[key] = value
    return json.dumps(line)


@pytest.mark.parametrize(
    "line",
    [
        _spoiled(bytes="big"),
        _spoiled(bytes=-5),
        _spoiled(threads=0),
        _spoiled(model=["a"]),
        _spoiled(notes="not a list"),
        _spoiled(recipe=[1, 2]),
        _spoiled(recipe={"format": 1}),
        _spoiled(bytes_by_component={"embeddings": "x"}),
        _spoiled(metrics_ppl=10**400),  # JSON holds it; Qt and the chart overflow
        _spoiled(metrics_decode_ms_per_token=-1.0),
        _spoiled(metrics_ppl="2.0"),
        _spoiled(metrics_top1_agreement=True),
        _spoiled(metrics="not an object"),
        _spoiled(task=["causal-lm"]),
        '{"model": "m", "metrics": {"ppl": NaN}}',
        "[1, 2]",
        "null",
        "[" * 100_000,  # deeper than json's recursion
    ],
)
def test_a_line_of_the_wrong_types_is_skipped_and_counted(tmp_path, line):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.append(_record(LMMetrics(ppl=5.0)))
    with store.path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    store.append(_record(LMMetrics(ppl=7.0)))
    before = store.path.read_bytes()
    assert [r.metrics.ppl for r in store.load()] == [5.0, 7.0]
    assert store.skipped == 1
    assert store.path.read_bytes() == before  # never rewritten


def test_bytes_that_are_not_utf8_cost_only_their_line(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.append(_record(LMMetrics(ppl=5.0)))
    with store.path.open("ab") as f:
        f.write(b'{"model": "\xff\xfe"}\n')
    store.append(_record(LMMetrics(ppl=7.0, mean_kl=-1e-9)))  # KL may round below 0
    assert [r.metrics.ppl for r in store.load()] == [5.0, 7.0] and store.skipped == 1
