"""Load on `workbench serve`: N concurrent clients on loopback for a bounded
time, valid requests mixed with unauthenticated, wrong-token, malformed and
over-limit ones.

The server is the real command (`python -m core.cli.main serve`, its own
process, so the clients do not share its GIL) with a token file made here.
Each client loops until the time is up, choosing a request kind at random
(seeded): completions and chat, whole and streamed (streams ask for usage),
and the refusals, each checked against the status it must get (a valid
request may get 429 when the queue is full; the client then waits the
Retry-After it was given, as OpenAI's clients do). One probe thread beside
them sends only refusals at a steady pace, so the 401 and 4xx checks have
many samples however slow the model is. Afterwards: /healthz, one more valid
request, the server's own /metrics against what the clients counted, then
Ctrl-C (SIGINT) and the exit status.

    .venv/bin/python benchmarks/serve_load.py [--model default] [--clients 8] [--seconds 60]

Last line: one JSON object (requests_ok, server_errors, unauthorised_accepted,
p50_ms, p99_ms, p99_ttft_ms, tokens_per_s and more).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MAX_PROMPT_TOKENS = 256
MAX_BODY_BYTES = 64 * 1024
PROMPTS = [
    "The capital of France is",
    "Write one sentence about the sea.",
    "List three prime numbers:",
    "A good name for a cat is",
    "Explain in one line what a compiler does.",
    "Once upon a time",
]

# kind -> (weight, statuses it may get). Valid requests may meet a full queue.
KINDS = {
    "completion": (16, {200, 429}),
    "completion_stream": (18, {200, 429}),
    "chat": (14, {200, 429}),
    "chat_stream": (18, {200, 429}),
    "no_token": (6, {401}),
    "wrong_token": (6, {401}),
    "wrong_token_bad_body": (3, {401}),
    "malformed_json": (4, {400}),
    "schema_invalid": (4, {422}),
    "oversize_body": (3, {413}),
    "too_many_prompt_tokens": (4, {400}),
    "max_tokens_over_limit": (4, {400}),
}
VALID = {"completion", "completion_stream", "chat", "chat_stream"}
UNAUTHORISED = {"no_token", "wrong_token", "wrong_token_bad_body"}


@dataclass
class Outcome:
    kind: str
    status: int | None  # None: no HTTP answer (connection error, timeout)
    latency_s: float
    ttft_s: float | None = None
    completion_tokens: int = 0
    problem: str = ""  # a well-formed-answer check that failed
    retry_after_s: float = 0.0  # a 429's Retry-After: the client waits that long, as clients do


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)


def build(kind: str, rng: random.Random, token: str, max_tokens: int):
    """(path, headers, content bytes, stream) for one request of ``kind``."""
    good = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    prompt = rng.choice(PROMPTS)
    sampling = {"max_tokens": rng.randint(max_tokens // 2, max_tokens), "temperature": 0.7}
    sampling["seed"] = rng.randrange(2**31)
    chat = kind.startswith("chat")
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body: dict = {"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt}
    body |= sampling
    stream = kind.endswith("_stream")
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = good
    content = json.dumps(body).encode()
    if kind == "no_token":
        headers = {"Content-Type": "application/json"}
    elif kind == "wrong_token":
        headers = {**good, "Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
    elif kind == "wrong_token_bad_body":
        headers = {**good, "Authorization": f"Bearer {token[:-1]}"}
        content = b'{"prompt": '
    elif kind == "malformed_json":
        content = b'{"prompt": "unterminated'
    elif kind == "schema_invalid":
        content = json.dumps({"prompt": prompt, "max_tokens": "many"}).encode()
    elif kind == "oversize_body":
        content = json.dumps({"prompt": "x" * (MAX_BODY_BYTES + 1)}).encode()
    elif kind == "too_many_prompt_tokens":
        content = json.dumps({"prompt": "hello world " * (2 * MAX_PROMPT_TOKENS)}).encode()
    elif kind == "max_tokens_over_limit":
        content = json.dumps({"prompt": prompt, "max_tokens": max_tokens * 1000}).encode()
    return path, headers, content, stream


def one_request(client: httpx.Client, kind: str, rng, token: str, max_tokens: int) -> Outcome:
    path, headers, content, stream = build(kind, rng, token, max_tokens)
    start = time.perf_counter()
    try:
        if not stream:
            response = client.post(path, headers=headers, content=content)
            outcome = Outcome(kind, response.status_code, time.perf_counter() - start)
            if response.status_code == 200:
                _check_whole(response.json(), kind, outcome)
            elif response.status_code >= 400:
                _check_error(response, outcome)
            return outcome
        with client.stream("POST", path, headers=headers, content=content) as response:
            outcome = Outcome(kind, response.status_code, 0.0)
            if response.status_code != 200:
                response.read()
                _check_error(response, outcome)
            else:
                _read_stream(response, kind, start, outcome)
            outcome.latency_s = time.perf_counter() - start
            return outcome
    except httpx.HTTPError as err:
        return Outcome(kind, None, time.perf_counter() - start, problem=type(err).__name__)


def _check_whole(data: dict, kind: str, outcome: Outcome) -> None:
    choice = data["choices"][0]
    text = choice["message"]["content"] if kind == "chat" else choice["text"]
    if not isinstance(text, str) or choice["finish_reason"] not in ("stop", "length"):
        outcome.problem = "malformed answer"
    outcome.completion_tokens = data["usage"]["completion_tokens"]


def _check_error(response, outcome: Outcome) -> None:
    if response.status_code == 429:
        outcome.retry_after_s = float(response.headers.get("retry-after", "1"))
    try:
        error = response.json()["error"]
        if not error.get("message") or not error.get("type"):
            outcome.problem = "error body without message/type"
    except (ValueError, KeyError, TypeError):
        outcome.problem = "error body is not OpenAI-style JSON"


def _read_stream(response, kind: str, start: float, outcome: Outcome) -> None:
    done = False
    for line in response.iter_lines():
        if not line:
            continue
        if not line.startswith("data: "):
            outcome.problem = "a stream line without data:"
            continue
        payload = line[6:]
        if payload == "[DONE]":
            done = True
            continue
        data = json.loads(payload)
        if "error" in data:
            outcome.problem = f"stream error: {data['error'].get('message')}"
            outcome.status = 500 if data["error"].get("type") == "server_error" else 503
            continue
        if data.get("usage"):
            outcome.completion_tokens = data["usage"]["completion_tokens"]
        for choice in data.get("choices", []):
            text = (
                choice.get("delta", {}).get("content")
                if kind == "chat_stream"
                else choice.get("text")
            )
            if text and outcome.ttft_s is None:
                outcome.ttft_s = time.perf_counter() - start
    if not done and not outcome.problem:
        outcome.problem = "stream ended without [DONE]"


def client_loop(url, token, deadline, seed, tally, max_tokens, timeout_s) -> None:
    rng = random.Random(seed)
    kinds, weights = list(KINDS), [w for w, _ in KINDS.values()]
    with httpx.Client(base_url=url, timeout=timeout_s) as client:
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            outcome = one_request(client, kind, rng, token, max_tokens)
            tally.add(outcome)
            time.sleep(max(0.0, min(outcome.retry_after_s, deadline - time.monotonic())))


def probe_loop(url, token, deadline, seed, tally, max_tokens, every_s) -> None:
    """Refusals only, at a steady pace: however slow the model, the 401 and
    4xx checks get many samples, sent while the model is busy."""
    rng = random.Random(seed)
    refusals = [kind for kind in KINDS if kind not in VALID]
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() < deadline:
            kind = refusals[rng.randrange(len(refusals))]
            tally.add(one_request(client, kind, rng, token, max_tokens))
            time.sleep(every_s)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def start_server(args, token_file: Path) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable, "-m", "core.cli.main", "serve", "--model", args.model,
        "--port", "0", "--token-file", str(token_file), "--json", "--quiet",
        "--max-prompt-tokens", str(MAX_PROMPT_TOKENS), "--max-tokens", str(args.max_tokens),
        "--max-body-bytes", str(MAX_BODY_BYTES), "--queue", str(args.queue),
    ]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + args.startup_s
    for line in server.stdout:
        if time.monotonic() > deadline:
            break
        if line.startswith("{"):
            event = json.loads(line)
            if event["event"] == "ServerStarted":
                threading.Thread(target=server.stdout.read, daemon=True).start()  # drain
                return server, event["url"]
    server.kill()
    raise SystemExit(f"the server did not start (exit {server.wait()})")


def served_requests(metrics_text: str) -> float:
    """Requests the server counted on the /v1 endpoints."""
    pattern = re.compile(r'^workbench_serve_requests_total\{endpoint="/v1/[^"]*",.*\} (\S+)$')
    return sum(float(m.group(1)) for m in map(pattern.match, metrics_text.splitlines()) if m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-tokens", type=int, default=32, help="per request, at most")
    parser.add_argument(
        "--queue", type=int, default=16, help="the server's queue capacity (its default: 16)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", 0)) or None,
        help="the server's torch threads (default: $OMP_NUM_THREADS, else all cores)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    parser.add_argument("--startup-s", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--probe-every",
        type=float,
        default=0.1,
        help="seconds between the probe thread's refusals (0: no probe thread)",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="serve-load-"))
    token = secrets.token_urlsafe(32)
    token_file = folder / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    server, url = start_server(args, token_file)
    tally = Tally()
    try:
        print(f"server at {url}; {args.clients} clients for {args.seconds:g} s", flush=True)
        started = time.perf_counter()
        deadline = time.monotonic() + args.seconds
        clients = [
            threading.Thread(
                target=client_loop,
                args=(
                    url,
                    token,
                    deadline,
                    args.seed * 1000 + i,
                    tally,
                    args.max_tokens,
                    args.timeout,
                ),
            )  # fmt: skip
            for i in range(args.clients)
        ]
        if args.probe_every > 0:
            clients.append(
                threading.Thread(
                    target=probe_loop,
                    args=(url, token, deadline, -1, tally, args.max_tokens, args.probe_every),
                )
            )
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        wall_s = time.perf_counter() - started
        healthz = httpx.get(f"{url}/healthz", timeout=30).status_code
        after = one_request(
            httpx.Client(base_url=url, timeout=args.timeout), "completion", random.Random(1),
            token, args.max_tokens,
        )  # fmt: skip
        metrics_text = httpx.get(f"{url}/metrics", timeout=30).text
    finally:
        server.send_signal(signal.SIGINT)
        try:
            exit_code = server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            exit_code = None

    outcomes = tally.outcomes
    kinds = Counter(o.kind for o in outcomes)
    wrong = [o for o in outcomes if o.status not in KINDS[o.kind][1]]
    problems = [o for o in outcomes if o.problem]
    ok = [o for o in outcomes if o.kind in VALID and o.status == 200 and not o.problem]
    unauthorised = [o for o in outcomes if o.kind in UNAUTHORISED]
    latencies = [o.latency_s * 1e3 for o in ok]
    ttfts = [o.ttft_s * 1e3 for o in ok if o.ttft_s is not None]
    tokens = sum(o.completion_tokens for o in ok)
    statuses = Counter(str(o.status) for o in outcomes)
    result = {
        "model": args.model,
        "clients": args.clients,
        "probe_every_s": args.probe_every,
        "seconds": round(wall_s, 1),
        "requests": len(outcomes),
        "requests_ok": len(ok),
        "server_errors": sum(1 for o in outcomes if o.status is not None and o.status >= 500),
        "transport_errors": sum(1 for o in outcomes if o.status is None),
        "unauthorised_sent": len(unauthorised),
        "unauthorised_accepted": sum(1 for o in unauthorised if o.status != 401),
        "wrong_status": len(wrong),
        "wrong_status_examples": [f"{o.kind}: {o.status}" for o in wrong[:5]],
        "malformed_answers": len(problems),
        "problem_examples": sorted({f"{o.kind}: {o.problem}" for o in problems})[:5],
        "queue_full_429": sum(1 for o in outcomes if o.kind in VALID and o.status == 429),
        "p50_ms": _rounded(percentile(latencies, 50)),
        "p99_ms": _rounded(percentile(latencies, 99)),
        "p50_ttft_ms": _rounded(percentile(ttfts, 50)),
        "p99_ttft_ms": _rounded(percentile(ttfts, 99)),
        "ttft_samples": len(ttfts),
        "tokens_per_s": round(tokens / wall_s, 2),
        "completion_tokens": tokens,
        "healthz_after": healthz,
        "request_after": after.status,
        "server_counted_v1_requests": served_requests(metrics_text),
        "client_sent_v1_requests": len(outcomes) + 1,
        "server_exit_code_after_sigint": exit_code,
        "statuses": dict(sorted(statuses.items())),
        "kinds": dict(sorted(kinds.items())),
        "cpu_count": os.cpu_count(),
        "server_threads": args.threads or os.cpu_count(),
        "max_tokens": args.max_tokens,
        "queue_capacity": args.queue,
    }
    for name in ("requests_ok", "server_errors", "unauthorised_accepted", "wrong_status",
                 "queue_full_429", "p50_ms", "p99_ms", "p50_ttft_ms", "p99_ttft_ms",
                 "tokens_per_s", "healthz_after", "server_exit_code_after_sigint"):  # fmt: skip
        print(f"{name:32} {result[name]}")
    print(json.dumps(result))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    main()
