"""What one request may ask of the server, and how many may wait. Checked
when the server starts (a bad limit is refused in one line) and per request
(answered with a JSON 4xx, never a 5xx)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MAX_LIMIT = 1_000_000


@dataclass(frozen=True)
class ServeLimits:
    max_prompt_tokens: int = 2048  # longer prompts: 400 (the context may cut it further)
    max_tokens: int = 512  # a request asking more: 400
    max_body_bytes: int = 256 * 1024  # a larger body: 413, before it is parsed
    queue_capacity: int = 16  # requests waiting beside the one generating; more: 429

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"serve limit {name} must be a whole number, got {value!r}")
            most = MAX_LIMIT * (1024 if name == "max_body_bytes" else 1)
            if not 1 <= value <= most:
                raise ValueError(f"serve limit {name} must be between 1 and {most:,}, got {value}")

    def to_dict(self) -> dict:
        return asdict(self)
