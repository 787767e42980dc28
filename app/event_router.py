"""Hands each job event to the parts of the window that show it.

Panels subscribe to the event types they display; the window no longer
decides in one long if/elif chain (whose last branch used to hand every
unknown event to the generate panel). An event nobody subscribed to is
ignored, so a job may yield new event types before any panel shows them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable


class EventRouter:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Callable[[object], None]]] = defaultdict(list)

    def subscribe(self, types: type | tuple[type, ...], handler: Callable[[object], None]) -> None:
        for kind in types if isinstance(types, tuple) else (types,):
            self._handlers[kind].append(handler)

    def dispatch(self, event) -> int:
        """Call every handler subscribed to ``event``'s type (or a base of it);
        returns how many were called."""
        called = 0
        for kind in type(event).__mro__:
            for handler in self._handlers.get(kind, ()):
                handler(event)
                called += 1
        return called
