"""The Serve job: a model behind an OpenAI-compatible HTTP endpoint until
cancelled.

It serves the loaded model (a folder, an export of ours, the default), or a
stored run's configuration rebuilt exactly as Export rebuilds it. Everything
that can be refused is refused before the model is built: the limits, the
token file, the address (the socket is bound first). Then uvicorn runs in a
thread of its own and the job yields ServerStarted, a RequestServed per
answered request and ServerStats every ``stats_every_s``; the CancelToken
(the window's Stop, the CLI's Ctrl-C) stops it gracefully: waiting requests
are answered 503, the one generating stops at its next token, answers in
flight are finished, then ServerStopped.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.jobs.run import _default_settings
from core.models.exported.layout import MANIFEST as EXPORT_MANIFEST
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress
from core.serve.events import RequestServed, ServerStarted, ServerStats, ServerStopped
from core.serve.limits import ServeLimits

DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ServeRequest:
    loaded: object  # core.models.loading.LoadedModel: served as it is, or the run's original
    record: object = None  # core.results.store.RunRecord: serve what this run measured
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: any free port (ServerStarted.url says which)
    token_file: Path | None = None  # None: the kept token (made at the first start)
    limits: ServeLimits = field(default_factory=ServeLimits)
    settings: object = field(default_factory=_default_settings)  # the run's calibration text
    store_dir: Path | None = None  # where a student's trained weights are kept
    stats_every_s: float = 1.0
    threads: int | None = None
    # core.runtime.prompt_lookup.PromptLookup: greedy requests (temperature 0)
    # draft tokens from their own text, checked in one step; None: off.
    lookup: object = None


def serve(
    request: ServeRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield ServerStarted, RequestServed and ServerStats until cancelled,
    then ServerStopped."""
    from core.runtime.device import set_threads
    from core.serve.server import bind_socket
    from core.serve.token_file import server_token

    cancel = cancel or CancelToken()
    if not request.stats_every_s > 0:
        raise ValueError("stats_every_s must be above 0")
    check_serve_lookup(request)
    token = server_token(request.token_file)  # refused before any work
    sock = bind_socket(request.host, request.port)
    try:
        set_threads(request.threads)
        served = _served_model(request, progress, cancel)
        cancel.raise_if_cancelled()
        yield from _run_server(request, served, token, sock, progress, cancel)
    finally:
        sock.close()


def check_serve_lookup(request: ServeRequest) -> None:
    """Prompt lookup needs a runner that can roll its cache back: refused in
    one line before any work on the compiled runner."""
    from core.runtime.runners import COMPILED_RUNNER, LOOKUP_REFUSAL, is_onnx_runtime

    loaded = request.loaded
    if (
        request.lookup is not None
        and loaded.runner == COMPILED_RUNNER
        and not is_onnx_runtime(loaded.model)
    ):
        raise ValueError(LOOKUP_REFUSAL)


def model_id(loaded, record=None) -> str:
    """The name clients pass as "model": the folder's (or hub id's) last
    part, and the run's ID when a run is served. A format folder inside one of
    our exports (``onnx``, ``onnx-int8``) is named with the export's folder:
    every ONNX export served as plain "onnx" told clients nothing."""
    source = str(loaded.source).split(" | ")[0].rstrip("/\\")
    base = source.replace("\\", "/").rsplit("/", 1)[-1] or "model"
    folder = Path(source)
    if folder.is_dir() and (folder.parent / EXPORT_MANIFEST).is_file():  # not a hub id
        base = f"{folder.parent.name}/{base}"
    return f"{base}@{record.run_id}" if record is not None else base


def _served_model(request: ServeRequest, progress, cancel):
    from core.jobs.run_model import measured_model
    from core.models.loading import require_causal_lm
    from core.runtime.generation import context_length
    from core.runtime.runners import COMPILED_RUNNER, is_onnx_runtime
    from core.serve.served_model import serve_model

    loaded, record, limits = request.loaded, request.record, request.limits
    require_causal_lm(loaded, "serving")
    longest = min(limits.max_prompt_tokens + limits.max_tokens, context_length(loaded.model.config))
    if record is not None:
        progress(Progress(f"Rebuilding {record.recipe_name} as it was measured", None))
        loaded = measured_model(
            loaded, record, request.settings, request.store_dir, longest, progress, cancel
        )
    elif loaded.runner == COMPILED_RUNNER and not is_onnx_runtime(loaded.model):
        from core.runtime.compiled_runner import compile_decode

        progress(Progress("Compiling the decode step (torch.compile; takes a while)", None))
        compile_decode(loaded.model, longest)  # before the first request, not in its time
    return serve_model(loaded, model_id(request.loaded, record), limits, request.lookup)


def _run_server(request, served, token, sock, progress, cancel) -> Iterator[object]:
    from core.serve.app import create_app
    from core.serve.server import RunningServer, ServeError, url_of

    answered: queue.Queue[RequestServed] = queue.Queue()
    app = create_app(served, token.value, request.limits, on_served=answered.put)
    engine = app.state.engine
    try:
        server = RunningServer(app, sock)
    except BaseException:
        engine.stop()
        raise
    started = time.perf_counter()
    tally = _Tally()
    try:
        progress(Progress(f"Serving {served.model_id} at {url_of(sock)}", None))
        yield ServerStarted(
            url_of(sock),
            served.model_id,
            token.value,
            str(token.path),
            token.new,
            request.limits.to_dict(),
            _lookup_settings(served),
        )
        last_at, last_requests, last_tokens = started, 0, 0
        while not cancel.cancelled and server.alive:
            try:
                event = answered.get(timeout=0.05)
                tally.add(event)
                yield event
            except queue.Empty:
                pass
            now = time.perf_counter()
            if now - last_at >= request.stats_every_s:
                tokens = engine.generated_tokens
                yield ServerStats(
                    elapsed_s=now - started,
                    requests=tally.requests,
                    requests_per_s=(tally.requests - last_requests) / (now - last_at),
                    tokens_per_s=(tokens - last_tokens) / (now - last_at),
                    generated_tokens=tokens,
                    queue_depth=engine.queue_depth,
                    generating=engine.generating,
                    client_errors=tally.client_errors,
                    server_errors=tally.server_errors,
                )
                last_at, last_requests, last_tokens = now, tally.requests, tokens
        died = not cancel.cancelled
    finally:
        engine.stop()  # waiting requests get 503, the running one stops at its next token
        server.stop()  # then answers in flight finish and the socket closes
    if died:
        raise ServeError("the HTTP server stopped unexpectedly")
    while not answered.empty():  # the requests answered while it stopped
        event = answered.get_nowait()
        tally.add(event)
        yield event
    yield ServerStopped(
        tally.requests, engine.generated_tokens, tally.server_errors, time.perf_counter() - started
    )


def _lookup_settings(served) -> dict | None:
    from core.runtime.prompt_lookup import OTHER_KERNEL_NOTE, other_kernel_for_drafts

    if served.lookup is None:
        return None
    settings = {"draft_tokens": served.lookup.draft_tokens}
    if other_kernel_for_drafts(served.loaded.model):
        settings["note"] = OTHER_KERNEL_NOTE
    return settings


class _Tally:
    def __init__(self) -> None:
        self.requests = self.client_errors = self.server_errors = 0

    def add(self, event: RequestServed) -> None:
        self.requests += 1
        self.client_errors += 400 <= event.status < 500
        self.server_errors += event.status >= 500
