"""OpenAI-style error bodies: ``{"error": {"message", "type", "param",
"code"}}`` with the HTTP status, so OpenAI clients raise their usual
exceptions (AuthenticationError, RateLimitError, BadRequestError ...)."""

from __future__ import annotations

import json

from core.message_text import one_line

# status -> OpenAI's error type
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """A request answered with ``status`` and an OpenAI-style body."""

    def __init__(self, status: int, message: str, param: str | None = None, code=None) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)[:500]
        self.param = param
        self.code = code

    def body(self) -> dict:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None, code=None) -> dict:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_bytes(status: int, message: str, code=None) -> bytes:
    return json.dumps(error_body(status, message, None, code)).encode()


async def send_error(send, status: int, message: str, code=None, headers=()) -> None:
    """Answer from an ASGI middleware, before the app has read the body."""
    body = error_bytes(status, message, code)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
