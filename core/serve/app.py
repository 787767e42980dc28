"""The FastAPI application: OpenAI-compatible completions and chat
completions (whole or streamed as server-sent events), the model list, a
health check and Prometheus metrics. Imported only when a server starts.

Every /v1 path needs the bearer token (``auth.py``, checked before the body
is read); every refusal is an OpenAI-style JSON error with a 4xx status. A
request is checked completely (size, JSON, schema, model name, max_tokens,
prompt length) before it is queued for the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from core.progress import CancelToken
from core.serve.api_errors import ApiError, error_body
from core.serve.auth import BearerAuth
from core.serve.engine import SHUTTING_DOWN, Engine, QueueFull
from core.serve.events import RequestServed
from core.serve.generation import Failed, Finished, GenerationJob, Token, run_generation
from core.serve.limits import ServeLimits
from core.serve.metrics import RecordRequests, ServeMetrics
from core.serve.request_body import read_json
from core.serve.served_model import ServedModel

COMPLETION_DEFAULT_TOKENS = 16  # OpenAI's default for /v1/completions; chat: the limit
DISCONNECT_POLL_S = 0.25  # how often a waiting or whole answer checks its client is still there


def create_app(
    served: ServedModel,
    token: str,
    limits: ServeLimits,
    metrics: ServeMetrics | None = None,
    engine: Engine | None = None,
    on_served: Callable[[RequestServed], None] | None = None,
):
    """The ASGI app serving ``served``; ``engine`` defaults to one generation
    thread with a queue of ``limits.queue_capacity``."""
    metrics = metrics or ServeMetrics()
    engine = engine or Engine(partial(run_generation, served), limits.queue_capacity)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_app):
        yield
        engine.stop()  # also stopped by the Serve job before the server stops

    app = FastAPI(
        title="Compression Workbench", docs_url=None, redoc_url=None, openapi_url=None,
        lifespan=lifespan,
    )  # fmt: skip
    app.state.engine = engine
    app.state.metrics = metrics

    @app.exception_handler(ApiError)
    async def api_error(_request, err: ApiError):
        headers = {"Retry-After": "1"} if err.status in (429, 503) else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request, err: HTTPException):  # 404, 405 from routing
        return JSONResponse(error_body(err.status_code, str(err.detail)), err.status_code)

    @app.get("/healthz")
    async def healthz():
        body = {
            "status": "ok" if engine.healthy else "stopping",
            "model": served.model_id,
            "queue_depth": engine.queue_depth,
            "generating": engine.generating,
        }
        return JSONResponse(body, status_code=200 if engine.healthy else 503)

    @app.get("/metrics")
    async def metrics_text():
        metrics.queue_depth.set(engine.queue_depth)
        metrics.generating.set(1 if engine.generating else 0)
        data, content_type = metrics.exposition()
        return Response(data, media_type=content_type)

    @app.get("/v1/models")
    async def models():
        entry = {"id": served.model_id, "object": "model", "created": created}
        return {"object": "list", "data": [{**entry, "owned_by": "compression-workbench"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _answer(request, served, limits, engine, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _answer(request, served, limits, engine, chat=True)

    app.add_middleware(BearerAuth, token=token)
    app.add_middleware(RecordRequests, metrics=metrics, on_served=on_served or _ignore)
    return app


def _ignore(_event) -> None:
    pass


async def _answer(request, served: ServedModel, limits: ServeLimits, engine: Engine, chat: bool):
    from core.runtime.sampling import Sampling
    from core.serve.prompts import chat_ids, completion_ids
    from core.serve.schemas import ChatRequest, CompletionRequest

    body = await read_json(
        request, ChatRequest if chat else CompletionRequest, limits.max_body_bytes
    )
    if body.model is not None and body.model != served.model_id:
        raise ApiError(
            404,
            f"model {body.model!r} is not served here; this server serves {served.model_id!r}",
            "model",
            "model_not_found",
        )
    asked = body.asked_tokens
    if asked is not None and asked > limits.max_tokens:
        raise ApiError(
            400, f"max_tokens {asked} is over this server's limit of {limits.max_tokens}",
            "max_tokens",
        )  # fmt: skip
    if chat:
        ids = await run_in_threadpool(chat_ids, served, body.messages)
    else:
        ids = await run_in_threadpool(completion_ids, served, body.text)
    room = served.room_after(len(ids))
    if room < 1:
        raise ApiError(400, "the prompt fills the model's context", "prompt")
    default = limits.max_tokens if chat else COMPLETION_DEFAULT_TOKENS
    answer = _Answer(request, served.model_id, chat, len(ids), body.stream, body.include_usage)
    sampling = Sampling(body.temperature, body.top_k, body.top_p, body.seed)
    job = GenerationJob(
        ids, min(asked or default, room), sampling, body.stops, answer.emit, answer.cancel
    )
    try:
        engine.submit(job)
    except QueueFull as err:
        code = "server_shutting_down" if str(err) == SHUTTING_DOWN else "queue_full"
        raise ApiError(
            503 if code == "server_shutting_down" else 429, str(err), code=code
        ) from None
    return await answer.respond(request)


class _Answer:
    """One request's answer: events from the model thread arrive on the
    event loop's queue and become a JSON body or a stream of SSE chunks."""

    def __init__(self, request, model_id, chat, prompt_tokens, stream, include_usage) -> None:
        from core.serve.responses import new_id

        self.id = new_id(chat)
        self.model_id, self.chat, self.stream = model_id, chat, stream
        self.prompt_tokens, self.include_usage = prompt_tokens, include_usage
        self.state = request.scope.setdefault("state", {})
        self.state.update(prompt_tokens=prompt_tokens, stream=stream)
        self.arrived = self.state.get("arrived", time.perf_counter())
        self.cancel = CancelToken()
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue = asyncio.Queue()
        self._first_token_at: float | None = None

    def emit(self, event) -> None:
        """Called on the model thread."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop closed: the server is gone
            self.cancel.cancel()

    async def _next(self):
        event = await self._events.get()
        if isinstance(event, Token) and event.tokens and self._first_token_at is None:
            self._first_token_at = time.perf_counter()
            self.state["ttft_ms"] = (self._first_token_at - self.arrived) * 1e3
        if isinstance(event, Finished):
            self.state.update(completion_tokens=event.completion_tokens)
            self.state.update(finish_reason=event.finish_reason)
            self.state.update(drafted_tokens=event.drafted_tokens)
            self.state.update(accepted_draft_tokens=event.accepted_draft_tokens)
            if self._first_token_at is not None and event.completion_tokens > 1:
                span = time.perf_counter() - self._first_token_at
                self.state["tokens_per_s"] = (event.completion_tokens - 1) / max(span, 1e-9)
        return event

    async def respond(self, request):
        # Until a stream starts (Starlette then ends it when its client goes),
        # nothing else notices a client that left: a queued or whole answer
        # would go on holding the one model thread for nobody.
        watcher = asyncio.create_task(self._watch(request))
        try:
            first = await self._next()  # headers wait for it: a refusal keeps its status
            self._raise_if_refused(first)
            if self.stream:
                watcher.cancel()
                return StreamingResponse(
                    self._chunks(first),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache"},
                )
            return JSONResponse(await self._whole(first))
        except BaseException:
            self.cancel.cancel()
            raise
        finally:
            watcher.cancel()

    async def _watch(self, request) -> None:
        while not self.cancel.cancelled:
            if await request.is_disconnected():
                self.state["client_left"] = True
                self.cancel.cancel()  # the engine skips it queued, or stops it mid-answer
                return
            await asyncio.sleep(DISCONNECT_POLL_S)

    def _raise_if_refused(self, event) -> None:
        if self.state.get("client_left") and isinstance(event, Finished):
            raise ApiError(499, "the client closed the request before its answer")
        _raise_if_refused(event)

    async def _whole(self, event) -> dict:
        from core.serve.responses import full_answer

        parts = []
        while True:
            self._raise_if_refused(event)
            if isinstance(event, Token):
                parts.append(event.text)
            elif isinstance(event, Finished):
                return full_answer(
                    self.id, self.model_id, self.chat, "".join(parts),
                    event.finish_reason, self.prompt_tokens, event.completion_tokens,
                )  # fmt: skip
            event = await self._next()

    async def _chunks(self, event):
        from core.serve.responses import chunk, sse, usage_chunk

        try:
            if self.chat:
                yield sse(chunk(self.id, self.model_id, True, role=True))
            while True:
                if isinstance(event, Token) and event.text:
                    yield sse(chunk(self.id, self.model_id, self.chat, event.text))
                elif isinstance(event, Finished) and event.finish_reason != "cancelled":
                    yield sse(chunk(self.id, self.model_id, self.chat, None, event.finish_reason))
                    if self.include_usage:
                        tokens = event.completion_tokens
                        yield sse(usage_chunk(self.id, self.model_id, self.chat,
                                              self.prompt_tokens, tokens))  # fmt: skip
                    yield sse("[DONE]")
                    return
                elif isinstance(event, Failed | Finished):  # failed, or stopped by shutdown
                    status, message = (
                        (event.status, event.message) if isinstance(event, Failed)
                        else (503, SHUTTING_DOWN)
                    )  # fmt: skip
                    self.state["stream_error"] = status
                    yield sse(error_body(status, message))
                    return
                event = await self._next()
        finally:
            self.cancel.cancel()  # done, or the client left: stop generating


def _raise_if_refused(event) -> None:
    if isinstance(event, Failed):
        raise ApiError(event.status, event.message)
    if isinstance(event, Finished) and event.finish_reason == "cancelled":
        raise ApiError(503, SHUTTING_DOWN, code="server_shutting_down")
