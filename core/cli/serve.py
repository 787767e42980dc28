"""`workbench serve`: a model (or a stored run's configuration) behind an
OpenAI-compatible HTTP endpoint with a bearer token, until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from core.cli.args import whole
from core.cli.common import add_model_args, add_runtime_args, load, note, progress, runtime_key
from core.jobs.serve import DEFAULT_PORT  # cheap: the job imports FastAPI and torch when it runs
from core.message_text import counted, shown
from core.runtime.prompt_lookup import MAX_DRAFT_TOKENS


def _host(text: str) -> str:
    from core.serve.server import check_host

    try:
        return check_host(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an IP address or a host name, got {shown(text)}"
        ) from None


def add_parser(sub) -> None:
    from core.serve.limits import ServeLimits

    limits = ServeLimits()
    parser = sub.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API (token, limits, /metrics)",
        description="Serves /v1/completions and /v1/chat/completions (streaming too), "
        "/v1/models, /healthz and /metrics (Prometheus). /v1 needs the bearer token: made "
        "at the first start and kept (mode 0600) in the user's config folder, or "
        "--token-file. Ctrl-C stops it.",
    )
    add_model_args(parser)
    add_runtime_args(parser)
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--run", metavar="ID", help="serve what this stored run measured")
    run.add_argument("--last", action="store_true", help="serve this model's latest stored run")
    parser.add_argument(
        "--host", type=_host, default="127.0.0.1", help="address to listen on (default: loopback)"
    )
    parser.add_argument(
        "--port", type=whole(0, 65535), default=DEFAULT_PORT, help="0: any free port"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the bearer token (readable by its owner only)",
    )
    parser.add_argument(
        "--max-prompt-tokens", type=whole(1, 1_000_000), default=limits.max_prompt_tokens
    )
    parser.add_argument(
        "--max-tokens",
        type=whole(1, 1_000_000),
        default=limits.max_tokens,
        help="the most new tokens a request may ask",
    )
    parser.add_argument(
        "--max-body-bytes", type=whole(1, 1024 * 1_000_000), default=limits.max_body_bytes
    )
    parser.add_argument(
        "--queue",
        type=whole(1, 1_000_000),
        default=limits.queue_capacity,
        help="requests that may wait for the model; more are answered 429",
    )
    parser.add_argument(
        "--prompt-lookup",
        type=whole(0, MAX_DRAFT_TOKENS),
        default=0,
        metavar="N",
        help="greedy requests (temperature 0) draft up to N tokens copied from their own "
        "text, each draft checked in one model step: the same answer in fewer steps when it "
        "repeats the prompt (0: off, default); sampled requests decode as before",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no line per request (nor stats with --json)"
    )
    parser.add_argument("--json", action="store_true", help="print each event as a JSON line")


def run(args) -> None:
    from core.cli.export import choose_run
    from core.errors import WorkbenchError
    from core.jobs.serve import ServeRequest, serve
    from core.progress import CancelToken
    from core.results.store import ResultsStore
    from core.runtime.prompt_lookup import PromptLookup
    from core.runtime.registry import runtime
    from core.runtime.runners import LOOKUP_REFUSAL
    from core.serve.limits import ServeLimits
    from core.serve.server import bind_socket, is_loopback
    from core.serve.token_file import read_token_file

    # Everything refused before the model is loaded.
    limits = ServeLimits(args.max_prompt_tokens, args.max_tokens, args.max_body_bytes, args.queue)
    lookup = PromptLookup(args.prompt_lookup) if args.prompt_lookup else None
    if lookup is not None and runtime(runtime_key(args)).compiled:
        raise ValueError(LOOKUP_REFUSAL)
    if args.token_file is not None:
        read_token_file(args.token_file)
    store = ResultsStore()
    record = None
    if args.run is not None or args.last:
        if runtime_key(args) != "torch":
            raise WorkbenchError(
                "a run is served on the runtime it was measured on; drop --backend"
            )
        chosen = argparse.Namespace(recipe=None, run=args.run, model=args.model)
        _, record = choose_run(chosen, store.load())
    bind_socket(args.host, args.port).close()  # the port is free (the job binds it again)
    if not is_loopback(args.host):
        note(f"listening on {args.host}: reachable from other machines, without TLS")

    loaded = load(args, "torch" if record is not None else None)
    request = ServeRequest(
        loaded,
        record,
        args.host,
        args.port,
        args.token_file,
        limits,
        store_dir=store.path.parent,
        threads=args.threads,
        lookup=lookup,
    )
    cancel = CancelToken()
    with _stop_on_signals(cancel):
        for event in serve(request, progress, cancel):
            _print(event, args)


@contextmanager
def _stop_on_signals(cancel):
    """Ctrl-C (or SIGTERM) stops the server gracefully; a second Ctrl-C interrupts."""

    def stop(signum, _frame) -> None:
        note("stopping (Ctrl-C again to interrupt)")
        cancel.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print(event, args) -> None:
    from core.serve.events import RequestServed, ServerStarted, ServerStats, ServerStopped

    if args.json:
        if args.quiet and isinstance(event, RequestServed | ServerStats):
            return
        data = {"event": type(event).__name__, **asdict(event)}
        if isinstance(event, ServerStarted) and not event.token_new:
            data["token"] = None  # shown once, when it was made
        print(json.dumps(data), flush=True)
    elif isinstance(event, ServerStarted):
        print(f"Serving {event.model_id} at {event.url} (OpenAI base URL {event.url}/v1)")
        if event.token_new:
            print(f"Token (shown this once; kept in {event.token_file}, mode 0600): {event.token}")
        else:
            print(f"Token: in {event.token_file}")
        if event.prompt_lookup:
            print(
                f"Prompt lookup: greedy requests draft up to {event.prompt_lookup['draft_tokens']} "
                "tokens from their own text; sampled requests decode as before"
            )
            if "note" in event.prompt_lookup:
                print(f"note: {event.prompt_lookup['note']}")
        print("Ctrl-C stops the server.", flush=True)
    elif isinstance(event, RequestServed) and not args.quiet:
        tokens = (
            f" {event.prompt_tokens}+{event.completion_tokens} tokens"
            if event.prompt_tokens
            else ""
        )
        first = f", first token {event.ttft_ms:.0f} ms" if event.ttft_ms is not None else ""
        print(
            f"{event.status} {event.endpoint}{tokens} {event.latency_ms:.0f} ms{first}",
            file=sys.stderr,
            flush=True,
        )
    elif isinstance(event, ServerStopped):
        print(
            f"Stopped after {event.seconds:.0f} s: {counted(event.requests, 'request')}, "
            f"{counted(event.generated_tokens, 'token')} generated, "
            f"{counted(event.server_errors, 'server error')}",
            flush=True,
        )
    elif isinstance(event, ServerStats):
        pass  # the window charts these; the CLI prints a line per request instead
