"""Exactly-once *processing* on top of at-least-once delivery.

Retries (``AsyncClient(retries=..., ack_timeout=...)``) make client -> server delivery at least
once: when an ack is late or lost the emit is sent again, so the server may see it twice.
Connection state recovery does the same the other way: a client that reconnects receives again
what it had not yet processed.  Neither can make *processing* exactly once; the application
can, with an identity it chooses and a memory of what it has done::

    seen = Dedupe(max_entries=10_000, ttl=300)

    @sio.on("order")
    async def order(sid, message):
        if not seen.first(message["id"], now=loop.time()):
            return "duplicate"          # acknowledge again, do nothing
        process(message)
        return "ok"

The client picks the id (a UUID, or its sid-independent name plus a counter): socket.io-client
gives each attempt a new ack id, so nothing on the wire identifies a re-sent emit except the
payload.  Server -> client, the recovery offset is that identity: :class:`OffsetDedupe` keeps
the offsets already processed.

Memory is bounded twice: at most ``max_entries`` ids (the oldest are forgotten first) and none
older than ``ttl`` seconds.  Both bounds are a promise with an edge: a duplicate that arrives
after its id was forgotten is processed again, so choose ``ttl`` above the longest time a
retry can take (``ack_timeout * (retries + 1)`` plus a reconnection) and ``max_entries`` above
the ids received in that time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

__all__ = ["Dedupe", "OffsetDedupe"]


class Dedupe:
    """A bounded set of recently seen message ids (insertion-ordered: an LRU by first sight)."""

    def __init__(self, max_entries: int = 10_000, ttl: float | None = 300.0) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self.ttl = ttl
        self._seen: OrderedDict[Hashable, float] = OrderedDict()   # id -> first seen at
        self.duplicates = 0   #: how many times first() said no

    def first(self, message_id: Hashable, now: float = 0.0) -> bool:
        """True the first time ``message_id`` is seen (remember it), False for a repeat."""
        self._expire(now)
        if message_id in self._seen:
            self.duplicates += 1
            return False
        self._seen[message_id] = now
        if len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True

    def __contains__(self, message_id: Hashable) -> bool:
        return message_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        if self.ttl is None:
            return
        threshold = now - self.ttl
        while self._seen:
            oldest_id, seen_at = next(iter(self._seen.items()))
            if seen_at >= threshold:
                return
            del self._seen[oldest_id]


class OffsetDedupe(Dedupe):
    """Server -> client: the recovery offset of each event is its identity.

    ``first(offset)`` is True once per offset.  lablib's client core keeps one per namespace
    (the last ``max_send_buffer`` offsets) and drops an event whose offset it has handed on
    already, so a replay never runs a handler twice for one broadcast; an application that
    sees the offsets itself (the official client passes them to its handlers as the last
    argument) can do the same with this class.
    """
