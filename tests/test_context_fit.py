"""A model whose context is shorter than the default 512-token perplexity
window is scored on windows of its whole context, and the run says so (a
window length the user asks for is checked instead: test_cli_eval)."""

from __future__ import annotations

import subprocess
import sys

from core.evaluate.perplexity import QUICK_PROTOCOL, fitted_to_context
from core.jobs.experiment import ExperimentSettings, run_experiment
from core.measure.speed import BenchSettings
from core.models.loading import load_model
from core.passes import REGISTRY
from core.passes.recipe import Recipe
from core.results.store import RunRecord


class Config:
    def __init__(self, positions):
        self.max_position_embeddings = positions


def test_a_short_context_shortens_the_window_and_keeps_the_stride_share():
    fitted, note = fitted_to_context(QUICK_PROTOCOL, Config(256))
    assert (fitted.context_tokens, fitted.stride) == (256, 128)
    assert "256 tokens" in note and "not 512" in note
    odd, _ = fitted_to_context(QUICK_PROTOCOL, Config(100))
    assert (odd.context_tokens, odd.stride) == (100, 50)


def test_a_context_that_fits_is_left_alone():
    assert fitted_to_context(QUICK_PROTOCOL, Config(2048)) == (QUICK_PROTOCOL, "")
    assert fitted_to_context(QUICK_PROTOCOL, Config(512)) == (QUICK_PROTOCOL, "")


def test_a_run_on_a_256_position_model_scores_256_token_windows_and_notes_it(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")  # 256 positions
    settings = ExperimentSettings(
        bench=BenchSettings(prompt_tokens=8, new_tokens=4, warmup=0, min_repeats=1, min_time_s=0)
    )
    recipe = Recipe((REGISTRY["int8_weight_only"](),))
    record = [e for e in run_experiment(loaded, recipe, settings) if isinstance(e, RunRecord)][0]
    assert record.metrics.ppl is not None and record.metrics.top1_agreement is not None
    assert "windows of 256 tokens at stride 128" in record.eval_protocol
    assert any("the model's context is 256 tokens" in note for note in record.notes)


def run_eval(*args):
    return subprocess.run(
        [sys.executable, "-m", "app.launcher", "eval", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_eval_fits_its_default_window(tiny_gpt2_dir):
    fitted = run_eval("--model", str(tiny_gpt2_dir), "--windows", "2")
    assert fitted.returncode == 0, fitted.stderr
    assert "2 windows of 256 tokens at stride 128" in fitted.stdout
    assert "the model's context is 256 tokens" in fitted.stderr + fitted.stdout


def test_a_family_that_names_its_context_otherwise_is_fitted_too(tmp_path):
    """MPT keeps its context in max_seq_len (ALiBi biases of that length):
    a 512-token window failed inside its attention."""
    import torch
    from transformers import AutoModelForCausalLM, MptConfig

    from core.evaluate.perplexity import PerplexityProtocol, compute_perplexity
    from tests.tiny_models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = MptConfig(
        vocab_size=len(tokenizer), d_model=64, n_layers=2, n_heads=4, max_seq_len=128
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "mpt")
    tokenizer.save_pretrained(tmp_path / "mpt")
    loaded = load_model(str(tmp_path / "mpt"), device="cpu")
    protocol, note = fitted_to_context(QUICK_PROTOCOL, loaded.model.config)
    assert (protocol.context_tokens, protocol.stride) == (128, 64) and "128 tokens" in note
    small = PerplexityProtocol(context_tokens=128, stride=64, quick_windows=2, source="pydoc")
    assert compute_perplexity(loaded.model, loaded.tokenizer, small).ppl > 1


def test_a_run_whose_benchmark_outgrows_the_context_is_refused_before_any_work(tmp_path):
    """compress timed 96 positions of a 4-token model (sweep twelve); bench refused."""
    import json

    import pytest

    from core.models.loading import load_model
    from core.passes.recipe import Recipe
    from tests.tiny_models import save_tiny_model

    folder = save_tiny_model("llama", tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 32}))
    loaded = load_model(str(folder), device="cpu")
    with pytest.raises(ValueError, match="= 96, over the model's 32-token context"):
        next(run_experiment(loaded, Recipe(), ExperimentSettings()))
