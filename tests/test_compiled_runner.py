"""The compiled runner (torch.compile + static cache) produces the eager
runner's tokens, on both architectures, from a worker thread as the window
runs it, and a compiled configuration is measured like any other."""

from __future__ import annotations

import dataclasses
import threading

import torch

from core.jobs.experiment import BACKENDS, run_experiment
from core.measure.speed import BenchSettings
from core.models.loading import load_model
from core.passes import REGISTRY
from core.passes.recipe import Recipe
from core.results.store import RunRecord
from core.runtime import compiled_runner, torch_runner
from core.runtime.sampling import GREEDY, Sampling
from tests.test_app_compression import TINY_SETTINGS

TINY_BENCH = BenchSettings(prompt_tokens=8, new_tokens=6, warmup=1, min_repeats=1, min_time_s=0)


def tokens(runner, model, ids, n, sampling=GREEDY):
    return [s.token_id for s in runner.generate_steps(model, ids, n, sampling)]


def test_compiled_decode_matches_eager_tokens_in_a_worker_thread(tiny_dir):
    loaded = load_model(str(tiny_dir), device="cpu")
    ids = loaded.tokenizer("def main(): return", return_tensors="pt").input_ids
    eager = tokens(torch_runner, loaded.model, ids, 12)
    results: dict = {}

    def work():  # the window compiles and runs in a QThread, not the main thread
        try:
            run_compiled()
        except Exception as error:
            results["error"] = error

    def run_compiled():
        results["seconds"] = compiled_runner.compile_decode(loaded.model, ids.shape[1] + 12)
        results["greedy"] = tokens(compiled_runner, loaded.model, ids, 12)
        results["again"] = tokens(
            compiled_runner, loaded.model, ids, 12
        )  # cache reset between runs

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert "error" not in results, results.get("error")
    assert results["greedy"] == eager
    assert results["again"] == eager
    assert results["seconds"] > 0
    sampled = Sampling(temperature=1.0, seed=5)
    assert tokens(compiled_runner, loaded.model, ids, 12, sampled) == tokens(
        torch_runner, loaded.model, ids, 12, sampled
    )


def test_compiled_backend_is_measured_and_labelled(tiny_llama_dir):
    original = load_model(str(tiny_llama_dir), device="cpu")
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    recipe = Recipe((REGISTRY["prune_mlp"](0.25),))
    settings = dataclasses.replace(TINY_SETTINGS, bench=TINY_BENCH)
    events = list(run_experiment(original, recipe, settings, backend="torch-compile"))
    record = events[-1]
    assert isinstance(record, RunRecord)
    assert record.backend == "torch-compile"
    assert BACKENDS["torch-compile"] in record.recipe_name
    assert record.metrics.decode_ms_per_token > 0 and record.metrics.ppl is not None
    assert 0 <= record.metrics.top1_agreement <= 1
    assert any("torch.compile" in note for note in record.notes)
    assert not record.is_original
    after = original.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_compiled_models_beyond_the_kept_number_are_released(tiny_llama_dir, tiny_gpt2_dir):
    """A window tries many configurations: old compiled graphs (which hold
    their model's weights) are dropped, and a dropped model compiles again."""
    first = load_model(str(tiny_llama_dir), device="cpu")
    second = load_model(str(tiny_gpt2_dir), device="cpu")
    ids = torch.tensor([[5, 6, 7]])
    compiled_runner.keep_compiled(1)
    try:
        compiled_runner.compile_decode(first.model, 16)
        compiled_runner.compile_decode(second.model, 16)
        assert list(compiled_runner._compiled) == [id(second.model)]
        assert tokens(compiled_runner, first.model, ids, 6) == tokens(
            torch_runner, first.model, ids, 6
        )
        assert list(compiled_runner._compiled) == [id(first.model)]
    finally:
        compiled_runner.keep_compiled(2)
