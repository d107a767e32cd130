"""Ack bookkeeping shared by the Socket.IO server and client cores (sans-I/O).

Socket.IO v5 (protocol spec, "Packet types" and "Acknowledgement"): an EVENT packet may carry
an *ack id*; the peer answers it with an ACK packet (type 3) of the same namespace and id,
whose data is the list of the acknowledgement's arguments::

    sender                             receiver
    2/chat,12["hello"]      ------->   EVENT asking for ack 12
                            <-------   3/chat,12["got it"]   ACK 12

The id is a non-negative integer; both reference implementations count it from 0 per
namespace and wrap at :data:`~lablib.socketio.packets.MAX_ACK_ID`.  The spec sets no timeout:
a deadline is this library's (and socket.io-client's ``timeout()``) addition.

What lives here:

* :func:`event_data` -- the data list of an EVENT packet (``[event, *args]``), checked;
* :class:`AckIds` -- a per-namespace id counter;
* :func:`cancel_acks` -- the AckCancelled of a socket that disconnected;
* :class:`AckDeadlines` -- the heap of pending acks' deadlines, shared by all the sockets of a
  core.  Each socket keeps its own ``acks`` dict (ack id -> deadline or None); answered or
  cancelled acks are simply removed from that dict, and their heap entries are skipped when
  they surface ("lazy deletion"), so answering an ack costs no heap work.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Callable, Collection, Generic, Hashable, Sequence, TypeVar

from ..errors import LocalProtocolError
from .packets import MAX_ACK_ID, RESERVED_EVENTS
from .events import AckCancelled

K = TypeVar("K", bound=Hashable)

#: A socket's pending acks: ack id -> its deadline (None: it waits for ever).
Acks = dict[int, "float | None"]


def event_data(event: str, args: Sequence[Any]) -> list[Any]:
    """The data of an EVENT packet: the event name first, then its arguments.

    The spec's event name is a string; the reserved names (``connect``, ``disconnect``, ...)
    cannot be emitted.  Either mistake raises LocalProtocolError before anything is sent.
    """
    if not isinstance(event, str):
        raise LocalProtocolError(f"an event name is a string, not {type(event).__name__}")
    if event in RESERVED_EVENTS:
        raise LocalProtocolError(f"{event!r} is a reserved event name")
    return [event, *args]


@dataclass(slots=True)
class AckIds:
    """Ack ids of one namespace: 0, 1, 2, ... wrapping to 0 after MAX_ACK_ID."""

    next_id: int = 0

    def allocate(self) -> int:
        ack_id = self.next_id
        self.next_id = 0 if ack_id == MAX_ACK_ID else ack_id + 1
        return ack_id


def cancel_acks(acks: Acks, namespace: str, sid: str, reason: str,
                keep: Collection[int | None] = ()) -> list[AckCancelled]:
    """Forget the pending acks of a socket that disconnected (``reason``), except the ids in
    ``keep``; one AckCancelled each, in the order they were asked for.  No ACK can come
    back for them: an ACK belongs to the connected namespace that sent the EVENT."""
    cancelled = [ack_id for ack_id in acks if ack_id not in keep]
    for ack_id in cancelled:
        del acks[ack_id]
    return [AckCancelled(namespace, sid, ack_id, reason) for ack_id in cancelled]


class AckDeadlines(Generic[K]):
    """The deadlines of the pending acks of many sockets, soonest first.

    A socket is named by a key (the client core: its namespace; the server core:
    ``(namespace, sid)``); ``lookup(key)`` returns that socket's ``acks`` dict, or None once
    the socket is gone.  An entry counts only while its socket still waits for that ack with
    that deadline.
    """

    def __init__(self, lookup: Callable[[K], Acks | None]) -> None:
        self._lookup = lookup
        self._heap: list[tuple[float, K, int]] = []

    def add(self, acks: Acks, key: K, ack_id: int, deadline: float | None) -> None:
        """Record that the socket ``key`` (whose dict is ``acks``) waits for ``ack_id``."""
        acks[ack_id] = deadline
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, key, ack_id))

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            deadline, key, ack_id = heap[0]
            acks = self._lookup(key)
            if acks is not None and acks.get(ack_id) == deadline:
                return
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        """The soonest deadline still pending (None: none)."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[K, int] | None:
        """Take one ack whose deadline has passed out of its socket's dict; return its
        ``(key, ack_id)`` (None: nothing due).  The caller reports it timed out."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, key, ack_id = heapq.heappop(self._heap)
        del self._lookup(key)[ack_id]
        return key, ack_id
