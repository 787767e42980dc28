"""workbench serve: the OpenAI-compatible app on a tiny model (auth, whole
and streamed answers, limits, the bounded queue, metrics), the token file,
the CLI's refusals and the Serve job running and stopping a real server."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient

from core.progress import CancelToken
from core.runtime.generation import GenerationSummary, stream_generation
from core.runtime.sampling import GREEDY, Sampling
from core.serve.app import create_app
from core.serve.engine import Engine
from core.serve.generation import run_generation
from core.serve.limits import ServeLimits
from core.serve.served_model import serve_model

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMITS = ServeLimits(max_prompt_tokens=64, max_tokens=16, max_body_bytes=4096, queue_capacity=4)


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    from core.models.loading import load_model

    return load_model(str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def served(loaded):
    return serve_model(loaded, "tiny", LIMITS)


@pytest.fixture
def client(served):
    app = create_app(served, TOKEN, LIMITS)
    with TestClient(app) as client:
        yield client


def greedy_text(
    loaded, prompt: str, tokens: int, chat: bool = False, sampling=GREEDY
) -> GenerationSummary:
    """What the Generate job answers: the reference for the server's answers."""
    events = list(stream_generation(loaded, prompt, tokens, sampling, chat=chat))
    return events[-1]


def sse_events(response) -> list:
    lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def metric(client, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# --- authentication -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_generation_needs_the_token_and_never_generates_without_it(client, headers):
    engine = client.app.state.engine
    for path, body in (
        ("/v1/completions", {"prompt": "Hello", "max_tokens": 4}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
    ):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"].startswith("Bearer")
    # the token is checked before the body: a bad body without it is still 401
    assert client.post("/v1/completions", content=b"{not json", headers=headers).status_code == 401
    assert client.get("/v1/models", headers=headers).status_code == 401
    assert engine.generated_tokens == 0
    assert metric(client, "workbench_serve_generated_tokens_total") == 0


def test_health_and_metrics_need_no_token(client):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/models", headers=AUTH).json()["data"][0]["id"] == "tiny"


# --- answers ------------------------------------------------------------------------


def test_completion_is_the_generate_jobs_greedy_answer(client, loaded):
    expected = greedy_text(loaded, "The cat sat", 8)
    body = {"prompt": "The cat sat", "max_tokens": 8, "temperature": 0, "model": "tiny"}
    response = client.post("/v1/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "text_completion" and data["model"] == "tiny"
    assert data["choices"][0]["text"] == expected.text
    assert data["choices"][0]["finish_reason"] == (
        "stop" if expected.stop_reason == "stop token" else "length"
    )
    assert data["usage"] == {
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens": expected.new_tokens,
        "total_tokens": expected.prompt_tokens + expected.new_tokens,
    }


def test_streamed_completion_matches_the_whole_one(client):
    body = {"prompt": "Import the module", "max_tokens": 10, "temperature": 0}
    whole = client.post("/v1/completions", json=body, headers=AUTH).json()
    options = {"include_usage": True}
    with client.stream(
        "POST", "/v1/completions", json={**body, "stream": True, "stream_options": options},
        headers=AUTH,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert usage["usage"] == whole["usage"] and usage["choices"] == []


def test_chat_without_a_template_reads_a_plain_transcript(client, loaded):
    from core.serve.prompts import plain_transcript

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = greedy_text(loaded, plain_transcript(messages), 6)
    body = {"messages": messages, "max_tokens": 6, "temperature": 0}
    data = client.post("/v1/chat/completions", json=body, headers=AUTH).json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": expected.text}
    assert data["usage"]["prompt_tokens"] == expected.prompt_tokens


def test_chat_uses_the_tokenizers_chat_template(loaded):
    tokenizer = copy.deepcopy(loaded.tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    with_template = dataclasses.replace(loaded, tokenizer=tokenizer)
    served = serve_model(with_template, "tiny", LIMITS)
    assert served.has_chat_template
    expected = greedy_text(with_template, "What is a list?", 6, chat=True)
    messages = [{"role": "user", "content": "What is a list?"}]
    with TestClient(create_app(served, TOKEN, LIMITS)) as client:
        body = {"messages": messages, "max_tokens": 6, "temperature": 0, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response:
            events = sse_events(response)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[0]["object"] == "chat.completion.chunk" and events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[1:-1])
    assert text == expected.text
    assert events[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_chat_template_that_refuses_answers_400_in_one_line(loaded):
    tokenizer = copy.deepcopy(loaded.tokenizer)
    tokenizer.chat_template = "{{ raise_exception('System role not supported') }}"
    served = serve_model(dataclasses.replace(loaded, tokenizer=tokenizer), "tiny", LIMITS)
    messages = [{"role": "user", "content": "hi"}]
    with TestClient(create_app(served, TOKEN, LIMITS)) as client:
        body = {"messages": messages, "max_tokens": 2}
        error = refused(client.post("/v1/chat/completions", json=body, headers=AUTH), 400)
    assert "chat template refused" in error["message"]
    assert "System role not supported" in error["message"] and "\n" not in error["message"]


def test_a_stop_sequence_ends_the_answer_before_it(client):
    body = {"prompt": "The function returns", "max_tokens": 16, "temperature": 0}
    full = client.post("/v1/completions", json=body, headers=AUTH).json()["choices"][0]["text"]
    assert len(full) > 6
    stop = full[3:6]
    cut = client.post("/v1/completions", json={**body, "stop": [stop]}, headers=AUTH).json()
    assert cut["choices"][0]["text"] == full[: full.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    with client.stream(
        "POST", "/v1/completions", json={**body, "stop": stop, "stream": True}, headers=AUTH
    ) as response:
        events = sse_events(response)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == full[: full.index(stop)]


def test_stop_text_holds_back_only_what_could_start_a_stop():
    from core.serve.stop_text import StopText

    stop = StopText(("END",))
    assert stop.feed("abcE") == "abc"  # "E" may begin END
    assert stop.feed("x") == "Ex"
    assert stop.feed("yyEN") == "yy"
    assert stop.feed("Dzz") == "" and stop.stopped
    assert stop.flush() == ""
    open_tail = StopText(("END",))
    assert open_tail.feed("aE") == "a" and open_tail.flush() == "E"


# --- limits -------------------------------------------------------------------------


def refused(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    return error


def test_limits_and_bad_bodies_get_json_4xx_and_never_generate(client):
    engine = client.app.state.engine
    post = client.post
    url = "/v1/completions"
    error = refused(post(url, json={"prompt": "x" * 5000}, headers=AUTH), 413)
    assert error["code"] == "body_too_large"

    def chunked():  # no Content-Length: counted while read
        for _ in range(10):
            yield b" " * 1000

    refused(post(url, content=chunked(), headers=AUTH), 413)
    assert refused(post(url, content=b"{nope", headers=AUTH), 400)["code"] == "invalid_json"
    as_text = {**AUTH, "Content-Type": "text/plain"}  # was parsed as JSON (sweep 12)
    assert refused(post(url, content=b'{"prompt": "x"}', headers=as_text), 415)
    json_kind = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    assert refused(post(url, content=b'{"prompt": 5}', headers=json_kind), 422)
    assert refused(post(url, json=["a list"], headers=AUTH), 422)
    assert refused(post(url, json={"prompt": 5}, headers=AUTH), 422)["param"] == "prompt"
    assert refused(post(url, json={"prompt": "x", "max_tokens": "8"}, headers=AUTH), 422)
    assert refused(post(url, json={"prompt": "x", "temperature": 9}, headers=AUTH), 422)
    assert "n=2" in refused(post(url, json={"prompt": "x", "n": 2}, headers=AUTH), 422)["message"]
    chat = {"messages": [{"role": "robot", "content": "x"}]}
    refused(post("/v1/chat/completions", json=chat, headers=AUTH), 422)
    error = refused(post(url, json={"prompt": "x", "max_tokens": 17}, headers=AUTH), 400)
    assert error["param"] == "max_tokens"
    error = refused(post(url, json={"prompt": "hello " * 100}, headers=AUTH), 400)
    assert error["code"] == "context_length_exceeded"
    error = refused(post(url, json={"prompt": "x", "model": "gpt-4"}, headers=AUTH), 404)
    assert error["code"] == "model_not_found"
    refused(client.get("/nowhere"), 404)
    assert engine.generated_tokens == 0


def test_text_numbers_and_temperatures_that_broke_generation_get_json_4xx(served):
    """Found by an adversarial sweep: each was a plain-text or JSON 500."""
    limits = ServeLimits(max_prompt_tokens=64, max_tokens=16, max_body_bytes=8192)
    with TestClient(create_app(served, TOKEN, limits)) as client:
        post, url = client.post, "/v1/completions"
        lone = b'{"prompt": "a\\ud800"}'  # a lone surrogate: not text
        assert refused(post(url, content=lone, headers=AUTH), 400)["param"] == "prompt"
        chat = b'{"messages": [{"role": "user", "content": "\\ud800"}]}'
        refused(post("/v1/chat/completions", content=chat, headers=AUTH), 400)
        digits = b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}"
        assert refused(post(url, content=digits, headers=AUTH), 400)["code"] == "invalid_json"
        nan = b'{"prompt": "x", "temperature": NaN}'
        assert refused(post(url, content=nan, headers=AUTH), 422)["param"] == "temperature"
        tiny = {"prompt": "x", "max_tokens": 3, "temperature": 1e-300}
        answer = post(url, json=tiny, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert client.app.state.engine.generated_tokens == 3  # only the valid one generated


def test_the_prompt_limit_stays_inside_the_context(loaded):
    served = serve_model(loaded, "tiny", ServeLimits(max_prompt_tokens=100_000))
    assert served.max_prompt_tokens == served.context - 1 == 255


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="queue_capacity"):
        ServeLimits(queue_capacity=0)
    with pytest.raises(ValueError, match="max_tokens"):
        ServeLimits(max_tokens=True)


# --- the queue ----------------------------------------------------------------------


def test_a_full_queue_answers_429_and_the_queued_requests_finish(served):
    running, release = threading.Event(), threading.Event()

    def held(job):  # the first generation waits until released: the queue fills for sure
        running.set()
        assert release.wait(30)
        run_generation(served, job)

    engine = Engine(held, capacity=1)
    app = create_app(served, TOKEN, LIMITS, engine=engine)
    body = {"prompt": "Hello", "max_tokens": 3, "temperature": 0}
    answers = {}
    with TestClient(app) as client:

        def post(name):
            answers[name] = client.post("/v1/completions", json=body, headers=AUTH)

        first = threading.Thread(target=post, args=("first",))
        first.start()
        assert running.wait(10)
        second = threading.Thread(target=post, args=("second",))
        second.start()
        deadline = time.monotonic() + 10
        while engine.queue_depth < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.queue_depth == 1 and engine.generating
        full = client.post("/v1/completions", json=body, headers=AUTH)
        assert refused(full, 429)["type"] == "rate_limit_error"
        assert full.headers["retry-after"] == "1"
        assert metric(client, "workbench_serve_queue_depth") == 1
        release.set()
        first.join(30)
        second.join(30)
        assert answers["first"].status_code == answers["second"].status_code == 200
        assert answers["first"].json()["choices"] == answers["second"].json()["choices"]
        assert metric(client, "workbench_serve_requests_total", status="429") == 1


def test_stopping_answers_waiting_requests_503(served):
    from core.serve.generation import Failed, GenerationJob

    def held(job):  # runs until stop() cancels it
        while not job.cancel.cancelled:
            time.sleep(0.01)

    engine = Engine(held, capacity=2)
    got = []
    jobs = [GenerationJob([1], 1, None, (), got.append, CancelToken()) for _ in range(3)]
    engine.submit(jobs[0])
    deadline = time.monotonic() + 10
    while not engine.generating and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.submit(jobs[1])  # these two wait behind the held one
    engine.submit(jobs[2])
    engine.stop()
    assert [e.status for e in got if isinstance(e, Failed)] == [503, 503]
    assert not engine.healthy


# --- metrics ------------------------------------------------------------------------


def test_metrics_count_requests_tokens_and_first_token_times(client):
    labels = {"endpoint": "/v1/completions", "status": "200"}
    before = metric(client, "workbench_serve_requests_total", **labels)
    ttft_before = metric(
        client, "workbench_serve_time_to_first_token_seconds_count", endpoint="/v1/completions"
    )
    body = {"prompt": "Hello", "max_tokens": 5, "temperature": 0}
    usage = client.post("/v1/completions", json=body, headers=AUTH).json()["usage"]
    client.post("/v1/completions", json=body)  # 401
    assert metric(client, "workbench_serve_requests_total", **labels) == before + 1
    assert metric(client, "workbench_serve_errors_total", status="401") >= 1
    assert (
        metric(
            client, "workbench_serve_time_to_first_token_seconds_count", endpoint="/v1/completions"
        )
        == ttft_before + 1
    )
    assert metric(client, "workbench_serve_generated_tokens_total") >= usage["completion_tokens"]
    assert metric(client, "workbench_serve_tokens_per_second") > 0
    latency = metric(
        client, "workbench_serve_request_duration_seconds_count", endpoint="/v1/completions"
    )
    assert latency >= 2


def test_two_servers_keep_their_own_counts(served):
    with TestClient(create_app(served, TOKEN, LIMITS)) as one:
        one.get("/healthz")
        one.get("/healthz")
        with TestClient(create_app(served, TOKEN, LIMITS)) as two:
            assert metric(two, "workbench_serve_requests_total", endpoint="/healthz") == 0
        assert metric(one, "workbench_serve_requests_total", endpoint="/healthz") == 2


# --- the token ----------------------------------------------------------------------


def test_the_token_is_made_once_with_mode_0600_and_reused(tmp_path, monkeypatch):
    from core.serve.token_file import server_token

    monkeypatch.setenv("WORKBENCH_CONFIG_DIR", str(tmp_path / "config"))
    first = server_token()
    assert first.new and first.path == tmp_path / "config" / "serve-token"
    assert len(first.value) >= 40
    if os.name == "posix":
        assert first.path.stat().st_mode & 0o777 == 0o600
    again = server_token()
    assert not again.new and again.value == first.value


def write_token(path, text: str, mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_token_file_is_used_and_checked(tmp_path):
    from core.serve.token_file import TokenFileError, server_token

    good = write_token(tmp_path / "good", "a-token-of-twenty-chars\n")
    token = server_token(good)
    assert token.value == "a-token-of-twenty-chars" and not token.new
    cases = {
        "does not exist": tmp_path / "missing",
        "is empty": write_token(tmp_path / "empty", "\n"),
        "characters": write_token(tmp_path / "short", "short"),
        "one line": write_token(tmp_path / "two", "a-token-of-twenty\nchars-more-here"),
        "not a regular file": tmp_path,
    }
    if os.name == "posix":
        cases["chmod 600"] = write_token(tmp_path / "open", "a-token-of-twenty-chars", 0o644)
    for message, path in cases.items():
        with pytest.raises(TokenFileError, match=message):
            server_token(path)


# --- the CLI ------------------------------------------------------------------------


def test_cli_refuses_bad_input_in_one_line_before_loading(tmp_path, capsys):
    from core.cli.main import main

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    loose = write_token(tmp_path / "loose", "a-token-of-twenty-chars", 0o644)
    missing_model = str(tmp_path / "no-model")
    cases = [
        ["--port", "70000"],
        ["--port", "-1"],
        ["--host", "not a host"],
        ["--queue", "0"],
        ["--max-tokens", "lots"],
        ["--token-file", str(tmp_path / "missing")],
        ["--run", "no-such-run"],
        ["--run", "x", "--last"],
        ["--last", "--backend", "ort"],
        ["--port", str(port)],
    ]
    if os.name == "posix":
        cases.append(["--token-file", str(loose)])
    try:
        for extra in cases:
            assert main(["serve", "--model", missing_model, *extra]) == 2, extra
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("error:"), (extra, err)
            assert "No such folder" not in err[0], extra  # refused before loading
    finally:
        busy.close()


# --- the job ------------------------------------------------------------------------


def test_the_job_serves_on_a_real_port_and_cancel_stops_it(loaded, tmp_path):
    from core.jobs.serve import ServeRequest, serve
    from core.serve.events import RequestServed, ServerStarted, ServerStats, ServerStopped

    token_file = write_token(tmp_path / "token", TOKEN)
    cancel = CancelToken()
    request = ServeRequest(loaded, port=0, token_file=token_file, limits=LIMITS, stats_every_s=0.2)
    events = serve(request, cancel=cancel)
    started = next(events)
    assert isinstance(started, ServerStarted) and not started.token_new
    assert started.url.startswith("http://127.0.0.1:") and started.token == TOKEN
    body = {"prompt": "Hello", "max_tokens": 4, "temperature": 0}
    answer = httpx.post(f"{started.url}/v1/completions", json=body, headers=AUTH, timeout=30)
    assert answer.status_code == 200
    assert httpx.post(f"{started.url}/v1/completions", json=body, timeout=30).status_code == 401
    seen = []
    for event in events:
        seen.append(event)
        if isinstance(event, ServerStats) and event.requests >= 2:
            break
    served = [e for e in seen if isinstance(e, RequestServed)]
    assert [e.status for e in served] == [200, 401]
    assert served[0].completion_tokens == answer.json()["usage"]["completion_tokens"]
    assert seen[-1].generated_tokens >= served[0].completion_tokens
    cancel.cancel()
    rest = list(events)
    assert isinstance(rest[-1], ServerStopped) and rest[-1].requests == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{started.url}/healthz", timeout=5)


def test_the_job_refuses_a_busy_port_before_building(loaded, tmp_path):
    from core.jobs.serve import ServeRequest, serve
    from core.serve.server import ServeError

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    token_file = write_token(tmp_path / "token", TOKEN)
    try:
        request = ServeRequest(loaded, port=busy.getsockname()[1], token_file=token_file)
        with pytest.raises(ServeError, match="cannot listen"):
            next(serve(request))
    finally:
        busy.close()


def test_a_run_is_served_as_it_was_measured(loaded, tmp_path):
    """A run's configuration is rebuilt from its recipe: the server answers
    what the compressed model answers, not the original."""
    from core.jobs.experiment import ExperimentSettings, build_compressed
    from core.jobs.serve import ServeRequest, serve
    from core.passes import REGISTRY
    from core.passes.recipe import Recipe

    recipe = Recipe((REGISTRY["prune_layers"](1),))
    record = SimpleNamespace(
        model=loaded.source, recipe=recipe.to_dict(), recipe_name=recipe.name,
        backend="torch", artifact={"kind": "recipe"}, run_id="20260101-000000-abcdef",
    )  # fmt: skip
    settings = ExperimentSettings(calibration_windows=2, calibration_length=32)
    compressed = build_compressed(loaded, recipe, settings).loaded
    sampled = Sampling(temperature=1.0, seed=7)  # sampling tells the two tiny models apart
    expected = greedy_text(compressed, "Hello there", 12, sampling=sampled).text
    assert expected != greedy_text(loaded, "Hello there", 12, sampling=sampled).text
    token_file = write_token(tmp_path / "token", TOKEN)
    cancel = CancelToken()
    request = ServeRequest(loaded, record, port=0, token_file=token_file, settings=settings)
    events = serve(request, cancel=cancel)
    started = next(events)
    try:
        assert started.model_id.endswith("@20260101-000000-abcdef")
        body = {"prompt": "Hello there", "max_tokens": 12, "temperature": 1.0, "seed": 7}
        answer = httpx.post(f"{started.url}/v1/completions", json=body, headers=AUTH, timeout=30)
        assert answer.json()["choices"][0]["text"] == expected
    finally:
        cancel.cancel()
        list(events)


def test_stopping_ends_a_stream_in_flight_with_503_and_the_server_exits(loaded, tmp_path):
    from core.jobs.serve import ServeRequest, serve
    from core.serve.events import ServerStopped

    token_file = write_token(tmp_path / "token", TOKEN)
    limits = ServeLimits(max_prompt_tokens=64, max_tokens=200)
    cancel = CancelToken()
    events = serve(
        ServeRequest(loaded, port=0, token_file=token_file, limits=limits), cancel=cancel
    )
    started = next(events)
    rest = []
    drain = threading.Thread(target=lambda: rest.extend(events))
    drain.start()
    body = {"prompt": "Hello", "max_tokens": 200, "temperature": 0, "stream": True}
    lines = []
    with httpx.stream(
        "POST", f"{started.url}/v1/completions", json=body, headers=AUTH, timeout=30
    ) as response:
        for line in response.iter_lines():
            if not line:
                continue
            lines.append(line)
            if len(lines) == 1:
                cancel.cancel()  # Stop, while the answer streams
    drain.join(30)
    assert not drain.is_alive() and isinstance(rest[-1], ServerStopped)
    assert "data: [DONE]" not in lines
    last = json.loads(lines[-1][6:])
    assert last["error"]["type"] == "service_unavailable" and len(lines) < 200


def test_a_format_folder_of_our_export_is_served_under_the_exports_name(tmp_path):
    # every ONNX export was served as plain "onnx": its subfolder's name
    from core.jobs.serve import model_id

    export = tmp_path / "smol-int8"
    (export / "onnx").mkdir(parents=True)
    (export / "workbench_export.json").write_text("{}")
    (tmp_path / "plain" / "onnx").mkdir(parents=True)
    assert model_id(SimpleNamespace(source=str(export / "onnx"))) == "smol-int8/onnx"
    assert model_id(SimpleNamespace(source=str(export))) == "smol-int8"
    assert model_id(SimpleNamespace(source=str(tmp_path / "plain" / "onnx"))) == "onnx"
    assert model_id(SimpleNamespace(source="org/name")) == "name"
