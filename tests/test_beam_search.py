"""Beam search (core/runtime/beam_search.py) picks exactly the tokens
transformers' ``generate(num_beams=..., do_sample=False)`` picks: on tiny
models of several families with every early-stopping mode and length
penalties other than 1, on the compiled runner, and on the default model
(3 prompts x 2 beam widths); through the job, the CLI and the Generate tab."""

from __future__ import annotations

import json

import pytest
import torch

from core.cli.main import main
from core.errors import UnsupportedModelError
from core.jobs.generate import GenerateRequest, generate
from core.models import loading
from core.models.loading import load_model
from core.progress import CancelToken
from core.runtime import compiled_runner, torch_runner
from core.runtime.beam_generation import BeamProgress, beam_steps_function
from core.runtime.beam_search import BeamResult, BeamSearch, BeamStep
from core.runtime.generation import GenerationSummary, TextToken, encode_prompt
from core.runtime.sampling import Sampling
from core.runtime.torch_runner import stop_token_ids
from tests.tiny_models import save_tiny_model

PROMPTS = ("def print(value):", "The list of", "import os")
# (beams, length_penalty, early_stopping): every early-stopping mode, with
# length penalties that favour short, neutral and long answers.
SETTINGS = (
    (2, 1.0, False),
    (4, 1.0, False),
    (4, 0.5, True),
    (3, 1.0, True),
    (4, -1.0, "never"),
    (4, 2.0, "never"),
    (4, 0.0, "never"),
    (3, 2.0, False),
)
NEW_TOKENS = 16


def varied(loaded):
    """A random untied head, scaled: the tiny models' tied heads mostly
    repeat one token, which would make every beam the same. Returns the stop
    ids: the model's, plus two tokens its greedy answer uses, so hypotheses
    finish at different lengths and early stopping matters."""
    model = loaded.model
    generator = torch.Generator().manual_seed(1)
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(0.3 * torch.randn(head.weight.shape, generator=generator))
    ids = loaded.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    greedy = [s.token_id for s in torch_runner.generate_steps(model, ids, 8)]
    return stop_token_ids(model, loaded.tokenizer) | {greedy[3], greedy[7]}


def transformers_beams(model, ids, stops, beams, penalty, early, new_tokens=NEW_TOKENS):
    out = model.generate(
        ids,
        max_new_tokens=new_tokens,
        num_beams=beams,
        do_sample=False,
        length_penalty=penalty,
        early_stopping=early,
        eos_token_id=sorted(stops),
        pad_token_id=0,
    )
    return out[0, ids.shape[1] :].tolist()


def search(runner, model, ids, stops, settings, new_tokens=NEW_TOKENS, cancel=None):
    events = list(runner.beam_steps(model, ids, new_tokens, settings, stops, cancel))
    assert all(isinstance(e, BeamStep) for e in events[:-1])
    assert isinstance(events[-1], BeamResult)
    return events[:-1], events[-1]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    kinds = ("llama", "gpt2", "qwen2", "mistral", "phi3", "gemma2")
    return {k: save_tiny_model(k, tmp_path_factory.mktemp(f"beam-{k}")) for k in kinds}


@pytest.mark.parametrize("kind", ["llama", "gpt2", "qwen2", "mistral", "phi3", "gemma2"])
def test_equals_transformers_beam_search(kind, family_dirs):
    loaded = load_model(str(family_dirs[kind]), device="cpu")
    stops = varied(loaded)
    answers, short_answers, early_ends = set(), 0, 0
    for prompt in PROMPTS[:2]:
        ids = loaded.tokenizer(prompt, return_tensors="pt").input_ids
        for beams, penalty, early in SETTINGS:
            expected = transformers_beams(loaded.model, ids, stops, beams, penalty, early)
            steps, result = search(
                torch_runner, loaded.model, ids, stops, BeamSearch(beams, penalty, early)
            )
            assert list(result.token_ids) == expected, (prompt, beams, penalty, early)
            assert [s.index for s in steps] == list(range(len(steps)))
            assert result.steps == len(steps) and not result.cancelled
            answers.add((prompt, tuple(expected)))
            short_answers += len(expected) < NEW_TOKENS
            early_ends += len(steps) < NEW_TOKENS
    # The settings mattered: answers of several lengths, some searches ended early.
    assert short_answers > 0 and early_ends > 0 and len(answers) > len(PROMPTS[:2])


def test_compiled_runner_equals_transformers(tiny_gpt2_dir):
    # One beam width: each compiles its own graph (tens of seconds).
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    stops = varied(loaded)
    compiled_runner.compile_decode(loaded.model, 64, 3)
    for prompt in PROMPTS:
        ids = loaded.tokenizer(prompt, return_tensors="pt").input_ids
        for penalty, early in ((1.0, False), (0.5, True), (2.0, "never")):
            expected = transformers_beams(loaded.model, ids, stops, 3, penalty, early)
            settings = BeamSearch(3, penalty, early)
            _, result = search(compiled_runner, loaded.model, ids, stops, settings)
            assert list(result.token_ids) == expected, (prompt, penalty, early)


def test_the_job_streams_steps_then_the_answer(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir), device="cpu")
    settings = BeamSearch(3, 1.0, False)
    events = list(generate(GenerateRequest(loaded, "import os", 10, beam_search=settings)))
    steps, summary = events[:-1], events[-1]
    assert all(isinstance(e, BeamProgress) for e in steps)  # no token claimed before the end
    assert isinstance(summary, GenerationSummary)
    ids = encode_prompt(loaded, "import os")
    stops = stop_token_ids(loaded.model, loaded.tokenizer)
    expected = transformers_beams(loaded.model, ids, stops, 3, 1.0, False, new_tokens=10)
    assert summary.text == loaded.tokenizer.decode(expected, skip_special_tokens=True)
    assert (summary.num_beams, summary.search_steps, summary.new_tokens) == (3, 10, len(expected))
    assert summary.stop_reason == "length"
    assert [s.index for s in steps] == list(range(10))
    assert all(s.step_s > 0 for s in steps)
    assert summary.prefill_ms == pytest.approx(steps[0].step_s * 1e3)
    later = [s.step_s for s in steps[1:]]
    assert summary.decode_ms_per_token == pytest.approx(sum(later) / len(later) * 1e3)


def test_cancel_stops_between_steps(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    cancel = CancelToken()
    request = GenerateRequest(loaded, "hello", 100, beam_search=BeamSearch(2))
    seen = []
    for event in generate(request, cancel=cancel):
        seen.append(event)
        if len(seen) == 3:
            cancel.cancel()
    summary = seen[-1]
    assert isinstance(summary, GenerationSummary) and summary.stop_reason == "cancelled"
    assert summary.search_steps == 3 and len(seen) == 4
    assert summary.text == seen[-2].leading_text  # nothing finished: the leading beam


def test_settings_are_checked():
    for bad in (
        dict(num_beams=1),
        dict(num_beams=True),
        dict(num_beams=2.0),
        dict(length_penalty=float("nan")),
        dict(early_stopping="sometimes"),
        dict(early_stopping=1),
    ):
        with pytest.raises(ValueError):
            BeamSearch(**bad)


def test_sampling_with_beams_is_refused(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    request = GenerateRequest(
        loaded, "x", 4, sampling=Sampling(temperature=0.7), beam_search=BeamSearch(2)
    )
    with pytest.raises(ValueError, match="temperature 0"):
        list(generate(request))


def test_onnx_runtime_is_refused_in_one_line():
    class OrtLike:  # what is_onnx_runtime recognises
        session = object()
        runner_name = "ort"

    with pytest.raises(UnsupportedModelError, match="batch is\\s+fixed at 1"):
        beam_steps_function(OrtLike(), "torch")
    assert beam_steps_function(object(), "torch-compile") is compiled_runner.beam_steps
    assert beam_steps_function(object(), "torch-eager") is torch_runner.beam_steps


# --- the command line ---------------------------------------------------------


@pytest.fixture
def no_model_loads(monkeypatch):
    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_model", must_not_load)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--num-beams", "0"], "--num-beams: must be between 1 and 64"),
        (["--num-beams", "65"], "--num-beams: must be between 1 and 64"),
        (["--num-beams", "2.5"], "--num-beams: must be a whole number"),
        (["--num-beams", "2", "--length-penalty", "nan"], "must be a finite number"),
        (["--num-beams", "2", "--length-penalty", "11"], "--length-penalty: must be in"),
        (["--num-beams", "2", "--early-stopping", "maybe"], "must be true, false or never"),
        (["--length-penalty", "2"], "apply to beam search: add --num-beams"),
        (["--early-stopping", "never"], "apply to beam search: add --num-beams"),
        (["--num-beams", "2", "--temperature", "0.7"], "set temperature 0"),
        (["--num-beams", "2", "--backend", "ort"], "beam search runs on PyTorch"),
        (["--num-beams", "2", "--backend", "ort-int8"], "beam search runs on PyTorch"),
    ],
)
def test_cli_refuses_in_one_line_before_loading(argv, fragment, no_model_loads, capsys):
    code = main(["generate", "--model", "default", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert fragment in err


def test_cli_beam_search(tiny_llama_dir, capsys):
    argv = ["generate", "--model", str(tiny_llama_dir), "-p", "import os", "-n", "8"]
    code = main([*argv, "--num-beams", "3", "--early-stopping", "true", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    ids = encode_prompt(loaded, "import os")
    stops = stop_token_ids(loaded.model, loaded.tokenizer)
    expected = transformers_beams(loaded.model, ids, stops, 3, 1.0, True, new_tokens=8)
    assert summary["text"] == loaded.tokenizer.decode(expected, skip_special_tokens=True)
    assert summary["num_beams"] == 3 and summary["search_steps"] == 8

    code = main([*argv, "--num-beams", "2", "--length-penalty", "0.5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "beam search, 2 beams" in err and "ms/step" in err
    expected = transformers_beams(loaded.model, ids, stops, 2, 0.5, False, new_tokens=8)
    assert out == loaded.tokenizer.decode(expected, skip_special_tokens=True)


# --- the Generate tab -------------------------------------------------------------


def test_generate_tab_runs_beam_search(qtbot, window):
    panel = window.generate_panel
    controls = panel.controls
    assert controls.temperature.isEnabled() and not controls.length_penalty.isEnabled()
    controls.temperature.setValue(0.8)
    controls.beams.setValue(3)
    assert not controls.temperature.isEnabled() and controls.length_penalty.isEnabled()
    controls.length_penalty.setValue(0.5)
    controls.early_stopping.setCurrentIndex(controls.early_stopping.findData("never"))
    controls.prompt.setPlainText("while True:")
    controls.chat.setChecked(False)
    controls.max_tokens.setValue(8)
    received = []
    window.runner.event.connect(received.append)
    window.tabs.setCurrentWidget(panel)
    with qtbot.waitSignal(window.runner.finished, timeout=60_000):
        panel.generate_button.click()

    summary = received[-1]
    assert isinstance(summary, GenerationSummary) and summary.num_beams == 3
    assert any(isinstance(e, BeamProgress) for e in received)
    assert not any(isinstance(e, TextToken) for e in received)
    model, tokenizer = window.loaded.model, window.loaded.tokenizer
    ids = tokenizer("while True:", return_tensors="pt").input_ids
    stops = stop_token_ids(model, tokenizer)
    expected = transformers_beams(model, ids, stops, 3, 0.5, "never", new_tokens=8)
    assert summary.text == tokenizer.decode(expected, skip_special_tokens=True)
    assert panel.output.toPlainText() == summary.text  # the answer replaced the leading beam
    assert "beam search, 3 beams" in panel.speed.text()
    qtbot.waitUntil(lambda: panel.chart.points_drawn() == summary.search_steps, timeout=3000)


# --- the default model ------------------------------------------------------------


@pytest.mark.real_model
def test_default_model_equals_transformers():
    """3 prompts x 2 beam widths, through the chat template, so answers end
    with the model's own end-of-turn token."""
    loaded = load_model("default", device="cpu")
    stops = stop_token_ids(loaded.model, loaded.tokenizer)
    prompts = (
        "What is the capital of France?",
        "Give me one tip for writing clear code.",
        "Name three colours of the rainbow.",
    )
    finished = 0
    for prompt in prompts:
        ids = encode_prompt(loaded, prompt, chat=True)
        for beams in (2, 4):
            expected = transformers_beams(loaded.model, ids, stops, beams, 1.0, False, 40)
            _, result = search(torch_runner, loaded.model, ids, stops, BeamSearch(beams), 40)
            assert list(result.token_ids) == expected, (prompt, beams)
            finished += expected[-1] in stops
    assert finished > 0  # some answers ended with the stop token, not the length limit
