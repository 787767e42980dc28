"""A request's JSON body, read and checked in order: its media type (415),
size (413, from Content-Length before reading, or while reading a chunked
body), JSON syntax (400), then the schema (422)."""

from __future__ import annotations

import json

from core.serve.api_errors import ApiError


async def read_json(request, schema, max_bytes: int):
    """``schema`` (a pydantic model) validated from the body of ``request``."""
    from pydantic import ValidationError

    kind = request.headers.get("content-type")
    if kind is not None and not _is_json(kind):
        raise ApiError(
            415,
            f"the body is sent as {kind.split(';')[0].strip() or 'nothing'}: "
            "send it as JSON with Content-Type: application/json",
            code="unsupported_media_type",
        )
    too_large = ApiError(413, f"request body over {max_bytes} bytes", code="body_too_large")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(declared) > max_bytes:
            raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    # ValueError: an integer past Python's 4,300-digit conversion limit
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ApiError(
            400, f"the body is not valid JSON ({type(err).__name__})", code="invalid_json"
        ) from None
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        param = str(first["loc"][0]) if first["loc"] else None  # the field, as OpenAI names it
        raise ApiError(422, f"{where}: {message}" if where else message, param) from None


def _is_json(content_type: str) -> bool:
    """application/json, or a JSON-based type (``+json``), with any parameters
    (a form or text/plain body was parsed as if it were JSON)."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
