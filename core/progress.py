"""What every long operation takes: a progress sink and a cancel token.

Jobs (core/jobs) and everything they call check ``cancel`` inside inner
loops and report ``Progress``; the window shows it, the CLI prints it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """A step of a long job: ``fraction`` in [0, 1], or None when unknown."""

    stage: str
    fraction: float | None = None


ProgressSink = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    """A progress sink for callers that do not show progress."""


class CancelToken:
    """A thread-safe flag: the GUI sets it, the job checks it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")
