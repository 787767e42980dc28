"""The classifier's Run job, its results record, and the demo classifier
prepared (FAST variant) into a temporary cache and loaded by name."""

import json

import pytest

from core.errors import ModelNotFoundError
from core.evaluate.classifier_accuracy import ClassifierAccuracy, ClassifierProtocol
from core.evaluate.zero_shot import AccuracyPartial
from core.jobs.experiment import ExperimentSettings, run_experiment
from core.jobs.tasks.classifier import ClassifierExperimentSettings
from core.measure.classifier_speed import (
    ClassificationTiming,
    ClassifierBenchResult,
    ClassifierBenchSettings,
)
from core.models.loading import load_model
from core.passes import REGISTRY
from core.passes.recipe import Recipe
from core.results.store import RunRecord

TINY = ExperimentSettings(
    classifier=ClassifierExperimentSettings(
        bench=ClassifierBenchSettings(tokens=16, warmup=1, min_repeats=3, min_time_s=0),
        accuracy=ClassifierProtocol(quick_examples=40, batch_size=16),
        calibration_reviews=8,
    )
)


def test_classifier_experiment_yields_accuracy_and_a_record(tiny_classifier_dir):
    original = load_model(str(tiny_classifier_dir), device="cpu")
    recipe = Recipe((REGISTRY["int8_dynamic"](),))
    events = list(run_experiment(original, recipe, TINY))
    record = events[-1]
    assert isinstance(record, RunRecord) and record.task == "sequence-classification"
    timings = [e for e in events if isinstance(e, ClassificationTiming)]
    bench = next(e for e in events if isinstance(e, ClassifierBenchResult))
    assert [t.warmup for t in timings] == [True, False, False, False] and bench.runs == 3
    assert (
        record.metrics.latency_ms_p10 <= record.metrics.latency_ms <= record.metrics.latency_ms_p90
    )
    assert record.metrics.examples_per_s == pytest.approx(1000 / record.metrics.latency_ms)
    partials = [e for e in events if isinstance(e, AccuracyPartial)]
    result = next(e for e in events if isinstance(e, ClassifierAccuracy))
    assert [p.done for p in partials] == [16, 32, 40]
    assert record.metrics.accuracy == result.accuracy == partials[-1].accuracy
    assert record.metrics.examples == 40
    assert (
        record.metrics.accuracy_ci95_low
        <= record.metrics.accuracy
        <= record.metrics.accuracy_ci95_high
    )
    assert 0 <= record.metrics.agreement <= 1 and record.metrics.agreement == result.agreement
    assert record.metric("ppl") is None and record.metric("tokens_per_s") is None
    assert not hasattr(record.metrics, "ppl")  # a classifier record has no LM columns
    assert record.bytes < original.description.bytes_in_memory
    assert "batch 1" in record.bench_protocol and "test split" in record.eval_protocol


def test_original_agrees_with_itself_and_a_copy_agrees_fully(tiny_classifier_dir):
    from core.evaluate.classifier_accuracy import evaluate_classifier

    original = load_model(str(tiny_classifier_dir), device="cpu")
    protocol = ClassifierProtocol(quick_examples=20)
    *_, result = evaluate_classifier(
        original.model, original.tokenizer, protocol, reference=original.model
    )
    assert result.agreement == 1.0
    record = list(run_experiment(original, Recipe(), TINY))[-1]
    assert record.metrics.agreement == 1.0 and record.is_original


@pytest.fixture(scope="module")
def fast_prepared(tmp_path_factory):
    """(cache dir, events) of one FAST preparation, shared by the tests below
    (training is the slow part: ~15 s on an idle 2-core machine)."""
    from core.jobs.prepare_classifier import prepare_demo_classifier

    cache = tmp_path_factory.mktemp("workbench-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_CACHE_DIR", str(cache))
        return cache, list(prepare_demo_classifier(fast=True))


def test_demo_classifier_before_preparing_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="workbench train-classifier"):
        load_model("demo-classifier")
    with pytest.raises(ModelNotFoundError, match="train-classifier --fast"):
        load_model("demo-classifier-fast")


def test_prepare_fast_caches_a_loadable_classifier(fast_prepared, monkeypatch, capsys):
    from core.cli.main import main
    from core.evaluate.sentiment_classifier import ClassifierResult
    from core.jobs.prepare_classifier import ClassifierReady, prepare_demo_classifier
    from core.models.demo_classifier import classifier_dir

    tmp_path, events = fast_prepared
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    ready = events[-1]
    assert isinstance(ready, ClassifierReady) and not ready.reused
    assert isinstance(events[-2], ClassifierResult) and ready.result == events[-2]
    assert (
        ready.folder
        == classifier_dir("demo-classifier-fast")
        == (tmp_path / "models" / "minilm-sentiment-fast")
    )
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["minilm-sentiment-fast"]

    loaded = load_model("demo-classifier-fast", device="cpu")
    assert loaded.is_classifier and loaded.folder == ready.folder
    assert loaded.description.layers == 6 and loaded.description.hidden_size == 384
    assert "test accuracy when prepared" in loaded.description.notes[0]
    (again,) = prepare_demo_classifier(fast=True)  # cached: nothing trained
    assert again.reused and again.result == ready.result
    with pytest.raises(ModelNotFoundError):
        load_model("demo-classifier")  # the full one is a different cache entry

    assert main(["eval", "--model", "demo-classifier-fast", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    accuracy = report["accuracy"]
    assert report["task"] == "sequence-classification" and accuracy["examples"] == 200
    assert accuracy["ci95_low"] <= accuracy["accuracy"] <= accuracy["ci95_high"]
    assert accuracy["agreement"] is None


@pytest.mark.real_model
def test_real_fast_classifier_int8_dynamic_from_the_cli(fast_prepared, monkeypatch, capsys):
    """The FAST-prepared MiniLM classifier through `workbench compress`:
    W8A8 shrinks its encoder and the record carries accuracy with its CI."""
    from core.cli.main import main
    from core.models.size import measure_size

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(fast_prepared[0]))
    original = measure_size(load_model("demo-classifier-fast").model)
    argv = ["compress", "--model", "demo-classifier-fast", "--pass", "int8_dynamic", "--json"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    metrics = record["metrics"]
    assert record["task"] == "sequence-classification" and metrics["examples"] == 200
    assert metrics["accuracy_ci95_low"] <= metrics["accuracy"] <= metrics["accuracy_ci95_high"]
    assert 0.5 <= metrics["agreement"] <= 1.0
    # Encoder linears go from 4 bytes a weight to 1 (+ scales); embeddings stay float.
    blocks = ("attention", "mlp")
    before = sum(original.by_component[c] for c in blocks)
    after = sum(record["bytes_by_component"][c] for c in blocks)
    assert after < 0.3 * before and record["bytes"] < original.total_bytes - 0.7 * before
    assert record["bytes_by_component"]["embeddings"] == original.by_component["embeddings"]


def test_cancelled_preparation_leaves_nothing_that_looks_prepared(tmp_path, monkeypatch):
    from core.errors import Cancelled
    from core.jobs.prepare_classifier import prepare_demo_classifier
    from core.models.demo_classifier import is_prepared
    from core.progress import CancelToken

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        for _ in prepare_demo_classifier(fast=True, cancel=cancel):
            cancel.cancel()  # after the first training step
    assert not is_prepared("demo-classifier-fast")
    assert list((tmp_path / "models").iterdir()) == []  # the staging folder is gone


def test_lm_only_jobs_refuse_a_classifier_and_bench_uses_its_protocol(tiny_classifier_dir, capsys):
    from core.cli.main import main
    from core.errors import UnsupportedModelError
    from core.measure.speed import benchmark
    from core.runtime.generation import stream_generation

    classifier = load_model(str(tiny_classifier_dir), device="cpu")
    with pytest.raises(UnsupportedModelError, match="sequence classifier"):
        next(stream_generation(classifier, "hello"))
    with pytest.raises(UnsupportedModelError, match="sequence classifier"):
        next(benchmark(classifier))
    argv = ["bench", "--model", str(tiny_classifier_dir), "--min-repeats", "2", "--min-time", "0"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"] == 2 and data["latency_ms_p10"] <= data["latency_ms_p90"]
    assert "batch 1" in data["protocol"]
