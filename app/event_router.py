"""Hands each job event to the parts of the window that show it.

Panels subscribe to the event types they display; the window no longer
decides in one long if/elif chain (whose last branch used to hand every
unknown event to the generate panel). An event nobody subscribed to is
ignored, so a job may yield new event types before any panel shows them.
A handler that raises is reported and the others still run: one panel's
bug used to stop the rest (a model loaded into half the window).
"""

from __future__ import annotations

import traceback
from collections import defaultdict
from collections.abc import Callable


class EventRouter:
    def __init__(self, on_error: Callable[[object, Exception], None] | None = None) -> None:
        self._handlers: dict[type, list[Callable[[object], None]]] = defaultdict(list)
        self._on_error = on_error  # (event, error): say it in the window

    def subscribe(self, types: type | tuple[type, ...], handler: Callable[[object], None]) -> None:
        for kind in types if isinstance(types, tuple) else (types,):
            self._handlers[kind].append(handler)

    def dispatch(self, event) -> int:
        """Call every handler subscribed to ``event``'s type (or a base of it);
        returns how many were called."""
        called = 0
        for kind in type(event).__mro__:
            for handler in self._handlers.get(kind, ()):
                called += 1
                try:
                    handler(event)
                except Exception as error:  # noqa: BLE001 - one panel's bug must not stop the rest
                    if self._on_error is None:
                        raise
                    traceback.print_exc()  # the details, for a bug report
                    self._on_error(event, error)
        return called
