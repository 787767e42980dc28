"""workbench serve --prompt-lookup: greedy requests draft tokens from their own
text and keep the model's greedy answer (the same text as a server without
it), counted in /metrics; sampled requests decode as before; the compiled
runner and bad draft lengths are refused in one line before any work."""

from __future__ import annotations

import dataclasses
import socket
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from core.runtime.prompt_lookup import OTHER_KERNEL_NOTE, PromptLookup
from core.serve.app import create_app
from core.serve.served_model import serve_model
from tests.test_serve import AUTH, LIMITS, TOKEN, metric, write_token

# A prompt that repeats itself: its tail has been seen, so drafts are offered.
PROMPT = "one two three four five six one two three four five six one two three"
DRAFTED = "workbench_serve_prompt_lookup_drafted_tokens_total"
ACCEPTED = "workbench_serve_prompt_lookup_accepted_tokens_total"


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    from core.models.loading import load_model

    return load_model(str(tiny_llama_dir), device="cpu")


def client_for(loaded, lookup):
    return TestClient(create_app(serve_model(loaded, "tiny", LIMITS, lookup), TOKEN, LIMITS))


def complete(client, **body):
    body = {"prompt": PROMPT, "max_tokens": 16, **body}
    response = client.post("/v1/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_greedy_answer_is_the_plain_servers_and_its_drafts_are_counted(loaded):
    with client_for(loaded, None) as plain:
        expected = complete(plain, temperature=0)
        assert metric(plain, DRAFTED) == 0
    # Single-token tails too, so that the tiny random model both keeps and rejects drafts.
    with client_for(loaded, PromptLookup(4, min_ngram=1)) as drafting:
        answer = complete(drafting, temperature=0)
        streamed = drafting.post(
            "/v1/completions",
            json={"prompt": PROMPT, "max_tokens": 16, "temperature": 0, "stream": True},
            headers=AUTH,
        )
        drafted, accepted = metric(drafting, DRAFTED), metric(drafting, ACCEPTED)
    assert answer["choices"][0]["text"] == expected["choices"][0]["text"]
    assert answer["usage"] == expected["usage"]
    assert streamed.status_code == 200
    assert 0 < accepted <= drafted


def test_a_sampled_request_decodes_as_before(loaded):
    sampled = {"temperature": 0.8, "seed": 7}
    with client_for(loaded, None) as plain:
        expected = complete(plain, **sampled)
    with client_for(loaded, PromptLookup(4, min_ngram=1)) as drafting:
        answer = complete(drafting, **sampled)
        assert metric(drafting, DRAFTED) == 0
    assert answer["choices"][0]["text"] == expected["choices"][0]["text"]


def test_the_job_says_it_drafts_and_refuses_the_compiled_runner(loaded, tmp_path):
    from core.jobs.serve import ServeRequest, serve
    from core.progress import CancelToken
    from core.runtime.runners import COMPILED_RUNNER

    token_file = write_token(tmp_path / "token", TOKEN)
    cancel = CancelToken()
    request = ServeRequest(loaded, port=0, token_file=token_file, lookup=PromptLookup(6))
    events = serve(request, cancel=cancel)
    started = next(events)
    assert started.prompt_lookup == {"draft_tokens": 6}  # PyTorch: the same answers, no note
    cancel.cancel()
    list(events)

    compiled = dataclasses.replace(loaded, runner=COMPILED_RUNNER)
    busy = socket.socket()  # refused before the port is even tried
    busy.bind(("127.0.0.1", 0))
    try:
        request = ServeRequest(compiled, port=busy.getsockname()[1], lookup=PromptLookup(6))
        with pytest.raises(ValueError, match="compiled"):
            next(serve(request))
    finally:
        busy.close()


def test_a_quantized_graph_carries_the_note_that_answers_may_differ():
    from core.jobs.serve import _lookup_settings

    graph = SimpleNamespace(weight_only=True)
    served = SimpleNamespace(lookup=PromptLookup(5), loaded=SimpleNamespace(model=graph))
    assert _lookup_settings(served) == {"draft_tokens": 5, "note": OTHER_KERNEL_NOTE}
    assert _lookup_settings(SimpleNamespace(lookup=None)) is None


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--prompt-lookup", "65"], "--prompt-lookup"),
        (["--prompt-lookup", "x"], "--prompt-lookup"),
        (["--prompt-lookup", "4", "--backend", "torch-compile"], "compiled"),
    ],
)
def test_cli_refuses_bad_lookup_settings_in_one_line_before_loading(tmp_path, capsys, extra, words):
    from core.cli.main import main

    assert main(["serve", "--model", str(tmp_path / "no-model"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
