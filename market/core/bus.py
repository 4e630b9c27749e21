"""The market's event bus: typed events to their subscribers, in one order for everyone.

The engine and its components emit; metrics, welfare accounts, the result recorder, agents and
live sessions subscribe. Subscribers may act on the market while they handle an event (a tenant
re-posts an expired order); the events that causes are queued and delivered after the current
one has reached every subscriber, so every subscriber sees the same sequence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from market.events import EVENT_TYPES, Event

Subscriber = Callable[[Event], None]


class EventBus:
    """Routes each event to the subscribers of its type, in subscription order."""

    __slots__ = ("_emitting", "_pending", "_routes")

    def __init__(self) -> None:
        # Subscribers by event type, as tuples: emitting reads them without copying.
        self._routes: dict[type[Event], tuple[Subscriber, ...]] = dict.fromkeys(EVENT_TYPES, ())
        self._pending: deque[Event] = deque()
        self._emitting = False

    def subscribe(self, callback: Subscriber,
                  kinds: Iterable[type[Event]] | None = None) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on, or only for events of the types
        in `kinds`; returns a function that unsubscribes."""
        targets = EVENT_TYPES if kinds is None else tuple(kinds)
        for kind in targets:
            if kind not in self._routes:
                raise ValueError(f"kinds: {kind!r} is not an event type of the market")
            self._routes[kind] = (*self._routes[kind], callback)

        def unsubscribe() -> None:
            for kind in targets:
                routes = list(self._routes[kind])
                if callback in routes:
                    routes.remove(callback)
                self._routes[kind] = tuple(routes)

        return unsubscribe

    def listened(self, kind: type[Event]) -> bool:
        """Whether anyone subscribes to `kind` (an event nobody hears need not be built)."""
        return bool(self._routes[kind])

    @property
    def waiting(self) -> int:
        """Events emitted while another was being handled, not yet delivered: while any
        wait, the market's state is ahead of what subscribers have heard."""
        return len(self._pending)

    def emit(self, event: Event) -> None:
        """Hand `event` to its subscribers; events caused meanwhile wait their turn."""
        pending = self._pending
        pending.append(event)
        if self._emitting:
            return
        self._emitting = True
        try:
            while pending:
                event = pending.popleft()
                for callback in self._routes[type(event)]:
                    callback(event)
        finally:
            self._emitting = False
            pending.clear()
