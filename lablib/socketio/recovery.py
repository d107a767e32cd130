"""Connection state recovery: the server keeps a dropped client's session and what it missed.

The official stack's feature (socket.io >= 4.6, ``connectionStateRecovery``), with the same wire
format, so the official client recovers against lablib and lablib's client against Node::

    CONNECT answer        40{"sid":"<sid>","pid":"<pid>"}         pid: a private session id
    each broadcast        42["news","x","<offset>"]                the offset: the last argument
    reconnecting client   40{"pid":"<pid>","offset":"<offset>",...app auth...}
    recovered             40{"sid":"<same sid>","pid":"<same pid>"}, then every missed packet

Which packets get an offset (Node's ``SessionAwareAdapter.broadcast``): every EVENT the server
*emits through the room machinery* - to everyone, to a room, to a sid - that asks for no
acknowledgement and is not volatile.  Emits with an ack id (``call``, ``emit(callback=)``) get
none and are not logged (an ack callback cannot be replayed); nor do ACK, CONNECT or DISCONNECT
packets.  In lablib every ``Server.emit`` is such a broadcast (there is no ``socket.emit``).

What is kept, on an *unexpected* disconnect only (:data:`RECOVERABLE_DISCONNECT_REASONS`: the
connection died, not a DISCONNECT from either side): the socket's sid, pid, rooms and
application ``data``, stamped with the time.  A reconnecting client's ``{pid, offset}`` restores
them if the session is younger than ``max_disconnection_duration`` *and* the offset is still in
the packet log; the missed packets are the logged ones after the offset whose rooms match the
session's (Node's ``shouldIncludePacket``).  Otherwise the client gets a new sid and
``recovered`` is false: a replay is complete or it does not happen.

Bounds: the log is trimmed by age (``max_disconnection_duration``) and by size
(``max_log_packets``, oldest first); the sessions by age and count (``max_sessions``).  Trimming
happens when packets or sessions are added or looked up, with the caller's clock (``now``,
seconds), so the store has no timer of its own.

Decided here (Node leaves it open):

* a session is used once: a restore removes it (Node keeps it until it expires, so two
  clients presenting the same pid would get the same sid);
* offsets are a decimal counter per namespace log ("1", "2", ...), not Node's time-based
  ``yeast`` ids: offsets are opaque to the client, and a counter makes captures reproducible.
  (A log shared between processes - Redis - makes its own ids.)

The store is a small interface with two faces.  :class:`SessionStore` is the synchronous one
the sans-I/O core calls itself (:class:`InMemorySessionStore`, one per namespace, like the room
adapter: the default).  :class:`AsyncSessionStore` is the one the asyncio driver calls around
the core when the store does I/O (``Server(session_store=...)``; the core then asks for it
with actions, see :mod:`lablib.socketio.server_core`).  It has an in-memory implementation,
:class:`AsyncInMemorySessionStore` (the same store behind ``async def``), and a Redis one,
:class:`lablib.socketio.redis_recovery.RedisSessionStore`, whose sessions survive a server
restart and a move to another process.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol

from ..errors import LocalProtocolError

__all__ = ["RecoveryOptions", "Session", "Restored", "SessionStore", "InMemorySessionStore",
           "AsyncSessionStore", "AsyncInMemorySessionStore", "RECOVERABLE_DISCONNECT_REASONS"]

#: The disconnect reasons after which a session is kept (socket.io's ``socket.ts``): the
#: connection was lost, nobody asked to leave.
RECOVERABLE_DISCONNECT_REASONS = frozenset({
    "transport error", "transport close", "forced close", "ping timeout",
    "server shutting down", "forced server close"})


@dataclass(frozen=True, slots=True)
class RecoveryOptions:
    """``connection_state_recovery={...}``: Node's two options plus lablib's bounds.

    ``max_disconnection_duration`` (ms, Node's default 2 minutes): how long a session and the
    packets are kept.  ``skip_middlewares`` (Node's default True): a recovered client is
    accepted without running the connect handler.  ``max_log_packets`` / ``max_sessions``:
    size bounds (Node has none).
    """

    max_disconnection_duration: int = 2 * 60 * 1000
    skip_middlewares: bool = True
    max_log_packets: int = 10_000
    max_sessions: int = 10_000

    @classmethod
    def from_option(cls, option: Mapping[str, Any] | bool | None) -> "RecoveryOptions | None":
        """None/False: off; True or a dict (Node's option, in snake case): on."""
        if option is None or option is False:
            return None
        if option is True:
            return cls()
        unknown = set(option) - set(cls.__dataclass_fields__)
        if unknown:
            raise LocalProtocolError(f"unknown connection_state_recovery options: {sorted(unknown)}")
        options = cls(**option)
        if options.max_disconnection_duration <= 0 or options.max_log_packets <= 0 \
                or options.max_sessions <= 0:
            raise LocalProtocolError("connection_state_recovery limits must be positive")
        return options


@dataclass(frozen=True, slots=True)
class Session:
    """What is kept of a socket that dropped."""

    sid: str
    pid: str
    rooms: tuple[str, ...]    #: its own room included
    data: Any                 #: the application's per-socket data (lablib: get_session's dict)
    disconnected_at: float    #: seconds, the caller's clock


@dataclass(frozen=True, slots=True)
class Restored:
    """A session found again, and the data arrays of the packets it missed, in order (each
    with its offset as the last element)."""

    session: Session
    missed: tuple[list, ...]


@dataclass(frozen=True, slots=True)
class _Logged:
    seq: int
    data: list                        #: the EVENT's data array, offset included
    rooms: frozenset[str] | None      #: None: the whole namespace
    except_rooms: frozenset[str]
    emitted_at: float


class SessionStore(Protocol):
    """What the server core needs to recover sessions (one store per namespace)."""

    def append(self, data: list, rooms: Iterable[str] | None, except_rooms: Iterable[str],
               now: float) -> str:
        """Log a broadcast EVENT's data array; append its offset to ``data`` and return it."""

    def persist(self, session: Session) -> None:
        """Keep a dropped socket's session until it expires."""

    def restore(self, pid: str, offset: str, now: float) -> Restored | None:
        """The session ``pid`` and what it missed after ``offset``, or None if the session
        expired or is unknown, or the offset is no longer (or never was) in the log."""


class InMemorySessionStore:
    """The single-process store: a deque of logged packets and an ordered dict of sessions."""

    def __init__(self, options: RecoveryOptions) -> None:
        self.options = options
        self._log: deque[_Logged] = deque()
        self._next_seq = 1
        self._sessions: OrderedDict[str, Session] = OrderedDict()   # pid -> session, oldest first

    @property
    def _max_age(self) -> float:
        return self.options.max_disconnection_duration / 1000

    def __len__(self) -> int:
        """How many packets the log holds."""
        return len(self._log)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def append(self, data: list, rooms: Iterable[str] | None, except_rooms: Iterable[str],
               now: float) -> str:
        seq = self._next_seq
        self._next_seq += 1
        offset = str(seq)
        data.append(offset)
        room_set = None if rooms is None else frozenset(rooms)
        self._log.append(_Logged(seq, data, room_set, frozenset(except_rooms), now))
        self._trim(now)
        return offset

    def persist(self, session: Session) -> None:
        self._sessions.pop(session.pid, None)
        self._sessions[session.pid] = session
        self._trim(session.disconnected_at)

    def restore(self, pid: str, offset: str, now: float) -> Restored | None:
        self._trim(now)
        session = self._sessions.pop(pid, None)
        if session is None:
            return None
        index = self._index_of(offset)
        if index is None:
            return None   # too far behind (trimmed), or not an offset of this log
        rooms = set(session.rooms)
        missed = tuple(entry.data for entry in list(self._log)[index + 1:]
                       if _reaches(entry, rooms))
        return Restored(session, missed)

    def _index_of(self, offset: str) -> int | None:
        if not self._log or not offset.isdigit():
            return None
        index = int(offset) - self._log[0].seq
        return index if 0 <= index < len(self._log) else None

    def _trim(self, now: float) -> None:
        threshold = now - self._max_age
        log = self._log
        while log and (len(log) > self.options.max_log_packets or log[0].emitted_at < threshold):
            log.popleft()
        sessions = self._sessions
        while sessions:
            oldest = next(iter(sessions.values()))
            if len(sessions) <= self.options.max_sessions and oldest.disconnected_at >= threshold:
                break
            sessions.popitem(last=False)


class AsyncSessionStore(Protocol):
    """The same three operations, as coroutines: what the driver awaits around the core.

    ``append`` must give offsets in the order it is called (the driver calls it once at a
    time per namespace) and ``restore`` must return a complete replay or None.
    """

    async def append(self, data: list, rooms: Iterable[str] | None,
                     except_rooms: Iterable[str], now: float) -> str:
        """Log a broadcast EVENT's data array; append its offset to ``data`` and return it."""

    async def persist(self, session: Session) -> None:
        """Keep a dropped socket's session until it expires."""

    async def restore(self, pid: str, offset: str, now: float) -> Restored | None:
        """The session ``pid`` and what it missed after ``offset``, or None."""


class AsyncInMemorySessionStore:
    """:class:`InMemorySessionStore` behind the async interface (one process, no I/O).

    ``AsyncInMemorySessionStore.factory()`` is a ``Server(session_store=...)``; it behaves as
    the default, where the core calls the store itself.
    """

    def __init__(self, options: RecoveryOptions) -> None:
        self.store = InMemorySessionStore(options)

    @classmethod
    def factory(cls):
        """``session_store(namespace, options)`` for the Server."""
        return lambda namespace, options: cls(options)

    def __len__(self) -> int:
        return len(self.store)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def append(self, data: list, rooms: Iterable[str] | None,
                     except_rooms: Iterable[str], now: float) -> str:
        return self.store.append(data, rooms, except_rooms, now)

    async def persist(self, session: Session) -> None:
        self.store.persist(session)

    async def restore(self, pid: str, offset: str, now: float) -> Restored | None:
        return self.store.restore(pid, offset, now)


def _reaches(entry: _Logged, rooms: set[str]) -> bool:
    """Would this broadcast have reached a socket in ``rooms``?  (Node's shouldIncludePacket.)"""
    included = entry.rooms is None or not entry.rooms.isdisjoint(rooms)
    return included and entry.except_rooms.isdisjoint(rooms)
