"""`workbench eval` through a real subprocess: JSON fields are the result dataclasses'."""

import json
from dataclasses import fields

import pytest

from core.evaluate.fidelity import FidelityResult
from core.evaluate.perplexity import PerplexityResult
from core.evaluate.side_by_side import GenerationPair
from core.evaluate.zero_shot import AccuracyResult
from tests.test_cli import run_cli

SMALL = ["--text", "pydoc", "--context-tokens", "64", "--stride", "32", "--windows", "3"]


def names(cls):
    return {f.name for f in fields(cls)}


def test_eval_json_with_reference_and_sentiment(tiny_gpt2_dir):
    model = str(tiny_gpt2_dir)
    out = run_cli("eval", "-m", model, *SMALL, "--reference", model, "--sentiment", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data["perplexity"]) == names(PerplexityResult)
    assert set(data["fidelity"]) == names(FidelityResult)
    assert set(data["sentiment"]) == names(AccuracyResult)
    assert all(set(g) == names(GenerationPair) for g in data["generations"])
    assert data["perplexity"]["windows"] == 3 and data["perplexity"]["ppl"] > 1
    assert data["fidelity"]["mean_kl"] == 0.0  # itself: the very same logits
    assert data["sentiment"]["examples"] == 200
    assert "window 3/3" in out.stderr  # live progress


def test_eval_text_output_names_the_protocol(tiny_llama_dir):
    out = run_cli("eval", "-m", str(tiny_llama_dir), *SMALL)
    assert out.returncode == 0, out.stderr
    assert "perplexity" in out.stdout and "95% CI" in out.stdout
    assert "3 windows of 64 tokens" in out.stdout


def test_eval_refuses_asked_windows_longer_than_the_model(tiny_gpt2_dir):
    # 512 > 256 positions; the default window is fitted instead (test_context_fit)
    out = run_cli("eval", "-m", str(tiny_gpt2_dir), "--text", "pydoc", "--context-tokens", "512")
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip() and "%" not in line]
    assert lines[-1].startswith("error: the protocol's 512-token windows exceed")


def test_eval_refuses_a_reference_with_another_tokenizer(tiny_gpt2_dir, tmp_path):
    from transformers import AutoTokenizer

    from tests.tiny_models import save_tiny_model

    other = save_tiny_model("gpt2", tmp_path / "other")
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<new-token>"])
    tokenizer.save_pretrained(other)
    out = run_cli("eval", "-m", str(tiny_gpt2_dir), *SMALL, "--reference", str(other))
    assert out.returncode == 2 and "different tokenizer" in out.stderr


def test_quick_and_full_exclude_each_other():
    out = run_cli("eval", "--quick", "--full")
    assert out.returncode == 2 and "not allowed with argument" in out.stderr


@pytest.mark.real_model
def test_eval_on_the_default_model_against_itself():
    out = run_cli(
        "eval",
        "--context-tokens",
        "128",
        "--stride",
        "64",
        "--windows",
        "2",
        "--reference",
        "default",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert 5 < data["perplexity"]["ppl"] < 100
    assert data["fidelity"]["top1_agreement"] == 1.0
    assert any("Paris" in g["reference"] for g in data["generations"])


def test_train_classifier_fast_json(tmp_path, monkeypatch):
    from core.evaluate.sentiment_classifier import ClassifierResult

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))  # never the user's cache
    out = run_cli("train-classifier", "--fast", "--json", "--threads", "2")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == names(ClassifierResult)
    assert data["steps"] == 16 and data["examples"] == 64
    assert "step 10/16" in out.stderr
    # Standard settings, no --out: prepared as --model demo-classifier-fast.
    assert (tmp_path / "models" / "minilm-sentiment-fast" / "config.json").is_file()


def test_train_classifier_says_up_front_that_other_settings_are_not_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    out = run_cli("train-classifier", "--fast", "--train-examples", "1", "--threads", "2")
    assert out.returncode == 0, out.stderr
    assert out.stderr.index("not saved: settings other than") < out.stderr.index("step 1/")
    assert "not saved (give --out DIR" in out.stdout
    assert not (tmp_path / "models").exists()  # nothing cached under the standard name


def test_train_classifier_rejects_zero_epochs():
    out = run_cli("train-classifier", "--epochs", "0")
    assert out.returncode == 2 and "--epochs: must be between 1 and 1,000" in out.stderr


def test_train_classifier_help():
    out = run_cli("train-classifier", "--help")
    assert out.returncode == 0 and "--fast" in out.stdout and "--out" in out.stdout


def test_reference_keeps_its_default_dtype_when_the_candidate_changes(tiny_llama_dir):
    model = str(tiny_llama_dir)
    out = run_cli(
        "eval", "-m", model, *SMALL, "--dtype", "bfloat16", "--reference", model, "--json"
    )
    assert out.returncode == 0, out.stderr
    fidelity = json.loads(out.stdout)["fidelity"]
    assert fidelity["mean_kl"] > 0  # bf16 candidate against the float32 reference (itself: 0.0)


@pytest.mark.parametrize(
    "runtime, expected",
    [
        ([], ("torch", ["bfloat16"])),
        (["--backend", "ort", "--int8"], ("onnxruntime-cpu-int8", None)),
    ],
)
def test_eval_says_which_runtime_weights_and_threads_it_measured(tiny_llama_dir, runtime, expected):
    dtype = ["--dtype", "bfloat16"] if not runtime else []
    args = ("eval", "-m", str(tiny_llama_dir), *SMALL, *dtype, *runtime, "--threads", "1")
    data = json.loads(run_cli(*args, "--json").stdout)
    on = data["measured_on"]
    assert (on["runtime"], on["device"], on["threads"]) == (expected[0], "cpu", 1)
    assert on["weights"] == expected[1] if expected[1] else "uint8" in on["weights"]
    first = run_cli(*args).stdout.splitlines()[0]
    assert f"weights on {expected[0]}, cpu, 1 threads" in first


@pytest.mark.parametrize("reference", ["missing", "classifier"])
def test_a_bad_reference_is_refused_before_the_perplexity_pass(
    tiny_llama_dir, tiny_classifier_dir, tmp_path, reference
):
    """A sweep saw all 200 windows scored, then "No such folder" (or "not a
    causal language model") for the reference."""
    from core.errors import WorkbenchError
    from core.evaluate.perplexity import PerplexityPartial, PerplexityProtocol
    from core.jobs.evaluate import EvaluateRequest, evaluate
    from core.models.loading import load_model

    loaded = load_model(str(tiny_llama_dir), device="cpu")
    other = str(tmp_path / "nope") if reference == "missing" else str(tiny_classifier_dir)
    protocol = PerplexityProtocol(context_tokens=64, stride=32, quick_windows=3, source="pydoc")
    request = EvaluateRequest(loaded, str(tiny_llama_dir), protocol, other, device="cpu")
    events = []
    with pytest.raises((WorkbenchError, ValueError)):
        for event in evaluate(request):
            events.append(event)
    assert not any(isinstance(e, PerplexityPartial) for e in events)
