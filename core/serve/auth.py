"""Bearer-token check for every /v1 path, as ASGI middleware: it runs before
the body is read or parsed, so a request without the token gets 401 whatever
else is wrong with it, and never reaches the model."""

from __future__ import annotations

import hmac

from core.serve.api_errors import send_error

PROTECTED_PREFIX = "/v1/"
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="workbench"')]


def bearer_matches(header: bytes | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token)


class BearerAuth:
    def __init__(self, app, token: str) -> None:
        self.app = app
        self._token = token.encode("ascii")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization")
        if bearer_matches(header, self._token):
            await self.app(scope, receive, send)
            return
        message = (
            "missing bearer token: send Authorization: Bearer <token>"
            if header is None
            else "invalid bearer token"
        )
        await send_error(send, 401, message, "invalid_api_key", _CHALLENGE)
