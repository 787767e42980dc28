"""What the Serve job yields: the server is up, each request answered,
periodic figures, and the server stopped. Frozen, so the window and the CLI
can only read them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerStarted:
    url: str  # http://host:port, where clients connect
    model_id: str  # the name /v1/models gives and requests may pass as "model"
    token: str  # the bearer token clients send
    token_file: str  # where the token is kept (mode 0600)
    token_new: bool  # made at this start: the CLI prints it this once
    limits: dict  # ServeLimits as a dict, to show what is refused
    # Prompt lookup for greedy requests: {"draft_tokens": N} and a "note" where
    # its answers may differ (quantized ONNX graphs); None: off.
    prompt_lookup: dict | None = None


@dataclass(frozen=True)
class RequestServed:
    """One answered HTTP request (any endpoint, any status)."""

    endpoint: str
    status: int
    latency_ms: float  # arrival to the last byte sent
    ttft_ms: float | None = None  # arrival to the first generated token (queue wait included)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stream: bool = False
    finish_reason: str | None = None
    drafted_tokens: int = 0  # prompt lookup: draft tokens proposed
    accepted_draft_tokens: int = 0  # ... and kept


@dataclass(frozen=True)
class ServerStats:
    """Figures over the last interval (rates) and since the start (totals)."""

    elapsed_s: float
    requests: int  # answered since the start, any status
    requests_per_s: float  # answered in the last interval
    tokens_per_s: float  # generated in the last interval (all requests together)
    generated_tokens: int
    queue_depth: int  # requests waiting for the model
    generating: bool
    client_errors: int  # 4xx since the start (401, 413, 429 ...)
    server_errors: int  # 5xx since the start


@dataclass(frozen=True)
class ServerStopped:
    requests: int
    generated_tokens: int
    server_errors: int
    seconds: float


SERVE_EVENTS = (ServerStarted, RequestServed, ServerStats, ServerStopped)
