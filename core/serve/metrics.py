"""Prometheus metrics, in a registry of the server's own (not the global
one: two servers in one process, or the tests, never share counts), and the
ASGI middleware that records every request's endpoint, status and latency.

The request's handler leaves what only it knows (time to first token, token
counts) in the request state; the middleware reads it when the last byte is
sent, so a streamed answer is timed to its end."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.serve.events import RequestServed

PREFIX = "workbench_serve"
KNOWN_PATHS = (
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/models",
    "/healthz",
    "/metrics",
)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServeMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered", ("endpoint", "status"), registry=r
        )
        self.errors = Counter(
            f"{PREFIX}_errors", "Requests answered 4xx or 5xx", ("endpoint", "status"), registry=r
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Arrival to the last byte sent",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "Arrival to the first generated token (queue wait included)",
            ("endpoint",),
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "Prompt tokens read", registry=r)
        self.generated_tokens = Counter(
            f"{PREFIX}_generated_tokens", "Tokens generated", registry=r
        )
        self.drafted_tokens = Counter(
            f"{PREFIX}_prompt_lookup_drafted_tokens",
            "Draft tokens prompt lookup proposed (greedy requests)",
            registry=r,
        )
        self.accepted_draft_tokens = Counter(
            f"{PREFIX}_prompt_lookup_accepted_tokens",
            "Draft tokens the model agreed with (kept without a step of their own)",
            registry=r,
        )
        self.tokens_per_second = Gauge(
            f"{PREFIX}_tokens_per_second",
            "Generation speed of the last finished request (first token to last)",
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Requests waiting for the model", registry=r
        )
        self.generating = Gauge(
            f"{PREFIX}_generating", "1 while the model is generating", registry=r
        )

    def record(self, served: RequestServed, decode_tokens_per_s: float | None) -> None:
        self.requests.labels(served.endpoint, str(served.status)).inc()
        if served.status >= 400:
            self.errors.labels(served.endpoint, str(served.status)).inc()
        self.latency.labels(served.endpoint).observe(served.latency_ms / 1e3)
        if served.ttft_ms is not None:
            self.ttft.labels(served.endpoint).observe(served.ttft_ms / 1e3)
        self.prompt_tokens.inc(served.prompt_tokens)
        self.generated_tokens.inc(served.completion_tokens)
        self.drafted_tokens.inc(served.drafted_tokens)
        self.accepted_draft_tokens.inc(served.accepted_draft_tokens)
        if decode_tokens_per_s is not None:
            self.tokens_per_second.set(decode_tokens_per_s)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RecordRequests:
    """ASGI middleware: each HTTP request becomes a RequestServed, counted in
    ``metrics`` and handed to ``on_served``."""

    def __init__(self, app, metrics: ServeMetrics, on_served: Callable[[RequestServed], None]):
        self.app = app
        self.metrics = metrics
        self.on_served = on_served

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        state["arrived"] = start
        status = 500  # what the client sees if the app fails before answering

        async def watched_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            path = scope["path"]
            served = RequestServed(
                endpoint=path if path in KNOWN_PATHS else "other",
                status=state.get("stream_error", status),  # a stream that failed after 200
                latency_ms=(time.perf_counter() - start) * 1e3,
                ttft_ms=state.get("ttft_ms"),
                prompt_tokens=state.get("prompt_tokens", 0),
                completion_tokens=state.get("completion_tokens", 0),
                stream=state.get("stream", False),
                finish_reason=state.get("finish_reason"),
                drafted_tokens=state.get("drafted_tokens", 0),
                accepted_draft_tokens=state.get("accepted_draft_tokens", 0),
            )
            self.metrics.record(served, state.get("tokens_per_s"))
            self.on_served(served)
