"""The Socket.IO client, sans-I/O: one Engine.IO connection, several namespaces, reconnection.

:class:`ClientCore` plays the parts of socket.io-client's ``Manager`` (the Engine.IO connection
and its reconnection) and ``Socket`` (one per namespace).  The driver opens and closes the
Engine.IO connection when told to and reports what happens to it::

    connect(namespace, auth)        join a namespace (opens the connection if needed)
    engine_opened(now)              the Engine.IO connection is open
    engine_failed(error, now)       opening it failed
    engine_closed(reason, now)      it closed ("transport close", "ping timeout", ...)
    receive(message, now)           one Engine.IO message (str or bytes) arrived
    tick(now)                       timers: ack timeouts, the reconnection delay

    -> Send(messages)               write these messages, in order
       OpenEngine()                 open a (new) Engine.IO connection
       CloseEngine(reason)          close it; the core already counts it as closed
       Connected / ConnectError / EventReceived / AckReceived / AckTimedOut / AckCancelled /
       Disconnected / ReconnectScheduled / ReconnectAttempt / Reconnected / ReconnectError /
       ReconnectFailed

Manager states (:class:`ManagerState`, the one Engine.IO connection), as a table a reader can
check against socket.io-client's ``Manager``::

    CLOSED          connect()                -> OpenEngine, OPENING
    OPENING         engine_opened            -> CONNECT each namespace, OPEN (+ Reconnected)
    OPENING         engine_failed            -> ConnectError per namespace, reconnection below
    OPEN            engine_closed / bad data -> Disconnected per namespace, reconnection below
    RECONNECT_WAIT  tick at the deadline     -> ReconnectAttempt + OpenEngine, OPENING
    (any)           last namespace left      -> CloseEngine, CLOSED (no reconnection)

    reconnection: attempts left -> ReconnectScheduled(attempt, delay), RECONNECT_WAIT
                  none left     -> ReconnectFailed, CLOSED

The delay is :class:`~lablib.socketio.backoff.Backoff`'s (1000 ms doubling to 5000, +-50 %),
reset when a connection opens and when a new outage starts.  A namespace refused by the server
(CONNECT_ERROR) or disconnected by either side is not reconnected, as in the reference; those
cut by the connection are, with their ``auth``.

Emits while a namespace is not connected wait in its *send buffer* and go out, in order, right
after it connects again (``volatile=True`` emits are dropped instead).  Emits handed to a
connection that then dies are lost: Socket.IO delivers at most once.  Acks of such emits are
cancelled (AckCancelled); acks of buffered emits survive, as in the reference (``_clearAcks``).

Connection state recovery (socket.io-client's ``_pid``/``_lastOffset``): when a CONNECT answer
carries a ``pid``, the core remembers it, and the offset of each event received - the last
argument, when it is a string and the event asks for no ack; it is taken off before the event
is handed on.  The next CONNECT of that namespace sends ``{"pid", "offset"}`` merged under the
application's auth, and ``Connected.recovered`` says whether the server answered with the same
pid.  Events that arrive before the CONNECT answer (the Node server replays missed packets
first) are kept and handed on right after ``Connected``.  (An event the server sends without
offset whose last argument is a string is misread as carrying one: the format cannot tell, a
limit of the official protocol; lablib's server gives an offset to every ack-less emit.)
An event whose offset was already handed on (the last ``max_send_buffer`` offsets are
remembered) is dropped: the offset is the event's identity, so a replay never makes a handler
run twice for one broadcast.

Retries (socket.io-client's ``retries`` and ``ackTimeout``): with ``retries`` set, every emit
that is not volatile goes through a queue: one in flight at a time, in order, each attempt
asking for an ack (a fresh ack id per attempt, as the reference; the payload is the identity).
An attempt fails when its ack does not come within ``ack_timeout`` ms or when the connection
drops; after ``retries`` failed attempts past the first the emit is dropped (AckTimedOut for
an ``emit_with_ack``).  On reconnection the head of the queue is sent again at once.  The
server may so process an emit more than once: see :mod:`lablib.socketio.dedupe`.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import LocalProtocolError, PacketError
from .acks import AckDeadlines, AckIds, Acks, cancel_acks, event_data
from .backoff import Backoff
from .dedupe import OffsetDedupe
from .packets import DEFAULT_MAX_ATTACHMENTS, Decoder, Packet, PacketType, encode
from ..events import Output
from .events import (IO_CLIENT_DISCONNECT, IO_SERVER_DISCONNECT, PARSE_ERROR, AckReceived,
                     AckTimedOut, CloseEngine, ConnectError, Connected, Disconnected,
                     EventReceived, OpenEngine, ReconnectAttempt, Reconnected, ReconnectError,
                     ReconnectFailed, ReconnectScheduled, Send)

__all__ = ["ClientCore", "ManagerState", "NamespaceState"]


class ManagerState(enum.Enum):
    """The client's one Engine.IO connection, as socket.io-client's ``Manager`` sees it."""

    CLOSED = "CLOSED"
    OPENING = "OPENING"
    OPEN = "OPEN"
    RECONNECT_WAIT = "RECONNECT_WAIT"


class NamespaceState(enum.Enum):
    IDLE = "IDLE"              #: not connected, and not trying (never asked, refused, or left)
    CONNECTING = "CONNECTING"  #: wants to be connected: CONNECT sent, or waiting for the engine
    CONNECTED = "CONNECTED"


@dataclass(slots=True)
class _Socket:
    namespace: str
    auth: dict | None
    state: NamespaceState = NamespaceState.IDLE
    sid: str | None = None
    ack_ids: AckIds = field(default_factory=AckIds)
    acks: Acks = field(default_factory=dict)   # ack id -> deadline
    send_buffer: deque[Packet] = field(default_factory=deque)
    # Connection state recovery:
    pid: str | None = None               # the server's private session id
    last_offset: str | None = None       # the offset of the last event handed on
    recovered: bool = False
    receive_buffer: list[Packet] = field(default_factory=list)   # events before CONNECT
    offsets: OffsetDedupe | None = None  # the offsets handed on (created with a pid)
    # Retries: the queue, and the attempt in flight (its ack id -> its entry)
    queue: deque["_Queued"] = field(default_factory=deque)
    queue_seq: int = 0                   # numbers the queued emits (the reference's _queueSeq)
    attempts: dict[int, "_Queued"] = field(default_factory=dict)


@dataclass(slots=True)
class _Queued:
    """An emit in the retry queue (socket.io-client's ``_queue`` entry)."""

    handle: int          #: what emit_with_ack returned: -1, -2, ... (AckReceived/AckTimedOut
    #: carry it; negative, so it never equals the ack id of an emit outside the queue)
    data: list           #: [event, *args], the same on each attempt
    wants_ack: bool
    tries: int = 0       #: attempts sent (the reference's tryCount)
    pending: bool = False


class ClientCore:
    """The sans-I/O Socket.IO client.

    Reconnection options are socket.io-client's, in its units (milliseconds):
    ``reconnection`` (True), ``reconnection_attempts`` (None: unlimited),
    ``reconnection_delay`` (1000), ``reconnection_delay_max`` (5000),
    ``randomization_factor`` (0.5).  ``rng`` draws the jitter: pass ``random.Random(seed)`` for
    reproducible delays.  ``max_send_buffer`` bounds the emits kept per namespace while
    disconnected (the reference keeps all); past it ``emit`` raises LocalProtocolError.  It
    also bounds the retry queue and the events held before a CONNECT answer.

    ``retries`` (None: off) and ``ack_timeout`` (ms, None: wait for ever) are
    socket.io-client's options (see the module docstring).
    """

    def __init__(self, *, reconnection: bool = True, reconnection_attempts: int | None = None,
                 reconnection_delay: int = 1000, reconnection_delay_max: int = 5000,
                 randomization_factor: float = 0.5, rng: random.Random | None = None,
                 max_send_buffer: int = 1000,
                 max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
                 retries: int | None = None, ack_timeout: int | None = None) -> None:
        if retries is not None and retries < 0:
            raise LocalProtocolError("retries must be >= 0")
        self.retries = retries
        self.ack_timeout = ack_timeout
        self.reconnection = reconnection
        self.reconnection_attempts = reconnection_attempts
        self.backoff = Backoff(min_ms=reconnection_delay, max_ms=reconnection_delay_max,
                               jitter=randomization_factor, rng=rng)
        self.max_send_buffer = max_send_buffer
        self.max_attachments = max_attachments
        self.state = ManagerState.CLOSED
        self._decoder = Decoder(max_attachments=max_attachments)
        self._sockets: dict[str, _Socket] = {}
        self._reconnecting = False
        self._reconnect_at: float | None = None
        # Deadlines of pending acks, keyed by namespace (see lablib.socketio.acks)
        self._ack_deadlines: AckDeadlines[str] = AckDeadlines(self._acks_of)

    # --- namespaces ------------------------------------------------------------------------

    def namespace_state(self, namespace: str = "/") -> NamespaceState:
        socket = self._sockets.get(namespace)
        return socket.state if socket else NamespaceState.IDLE

    def sid(self, namespace: str = "/") -> str | None:
        """Our sid in ``namespace`` while connected."""
        socket = self._sockets.get(namespace)
        return socket.sid if socket else None

    def recovered(self, namespace: str = "/") -> bool:
        """Did the last CONNECT answer of ``namespace`` restore our session?"""
        socket = self._sockets.get(namespace)
        return socket.recovered if socket else False

    def pid(self, namespace: str = "/") -> str | None:
        socket = self._sockets.get(namespace)
        return socket.pid if socket else None

    def last_offset(self, namespace: str = "/") -> str | None:
        socket = self._sockets.get(namespace)
        return socket.last_offset if socket else None

    def queued(self, namespace: str = "/") -> int:
        """How many emits wait in ``namespace``'s retry queue (the one in flight included)."""
        socket = self._sockets.get(namespace)
        return len(socket.queue) if socket else 0

    def buffered(self, namespace: str = "/") -> int:
        """How many emits wait in ``namespace``'s send buffer."""
        socket = self._sockets.get(namespace)
        return len(socket.send_buffer) if socket else 0

    def connect(self, namespace: str = "/", auth: dict | None = None) -> list[Output]:
        """Join ``namespace`` with ``auth`` (sent in the CONNECT packet, and again on each
        reconnection).  Opens the Engine.IO connection first if there is none."""
        if not namespace.startswith("/"):
            raise LocalProtocolError(f"a namespace starts with '/': {namespace!r}")
        if auth is not None and not isinstance(auth, dict):
            raise LocalProtocolError("auth must be a dict (a JSON object)")
        socket = self._sockets.setdefault(namespace, _Socket(namespace, auth))
        if socket.state is NamespaceState.IDLE:
            socket.auth = auth
            socket.state = NamespaceState.CONNECTING
            if self.state is ManagerState.OPEN:
                return self._send_connect(socket)
        if self.state is ManagerState.CLOSED:   # first time, or after giving up reconnecting
            self.state = ManagerState.OPENING
            self._reconnect_at = None
            return [OpenEngine()]
        return []   # OPENING or RECONNECT_WAIT: the CONNECT goes out when the engine opens

    def _send(self, packet: Packet) -> list[Output]:
        return [Send(tuple(encode(packet)))]

    def _send_connect(self, socket: _Socket) -> list[Output]:
        """CONNECT with the auth; with a pid, ``{pid, offset}`` first (the application's keys
        win, as ``Object.assign({pid, offset}, auth)``; no offset yet: left out)."""
        data = socket.auth
        if socket.pid is not None:
            data = {"pid": socket.pid}
            if socket.last_offset is not None:
                data["offset"] = socket.last_offset
            data.update(socket.auth or {})
        socket.receive_buffer = []
        return self._send(Packet(PacketType.CONNECT, socket.namespace, data))

    # --- the Engine.IO connection -----------------------------------------------------------

    def engine_opened(self, now: float) -> list[Output]:
        """The Engine.IO connection is open: send CONNECT for every namespace that wants one.

        (If every namespace was left while it was opening, the answer is CloseEngine.)"""
        if self.state is ManagerState.CLOSED:
            return [CloseEngine(IO_CLIENT_DISCONNECT)]
        if self.state is not ManagerState.OPENING:
            raise LocalProtocolError(f"engine_opened in state {self.state.name}")
        self.state = ManagerState.OPEN
        self._decoder.reset()
        out: list[Output] = []
        if self._reconnecting:
            out.append(Reconnected(self.backoff.attempts))
            self._reconnecting = False
        self.backoff.reset()
        for socket in self._sockets.values():
            if socket.state is NamespaceState.CONNECTING:
                out += self._send_connect(socket)
        return out

    def engine_failed(self, error: str, now: float) -> list[Output]:
        """Opening the Engine.IO connection failed (``error`` describes why)."""
        if self.state is not ManagerState.OPENING:
            return []   # we gave up on it meanwhile
        self.state = ManagerState.CLOSED
        out: list[Output] = [ConnectError(s.namespace, error) for s in self._sockets.values()
                             if s.state is NamespaceState.CONNECTING]
        if self._reconnecting:
            out.append(ReconnectError(self.backoff.attempts, error))
            self._reconnecting = False
        return out + self._maybe_reconnect(now)

    def engine_closed(self, reason: str, now: float) -> list[Output]:
        """The Engine.IO connection closed (``reason`` from Engine.IO)."""
        if self.state is not ManagerState.OPEN:
            return []   # we closed it ourselves (CloseEngine), or it was never open
        return self._connection_lost(reason, now)

    def _connection_lost(self, reason: str, now: float) -> list[Output]:
        self.state = ManagerState.CLOSED
        self._decoder.reset()
        out: list[Output] = []
        for socket in self._sockets.values():
            if socket.state is NamespaceState.CONNECTED:
                socket.state = NamespaceState.CONNECTING   # comes back with the connection
                out += self._socket_closed(socket, reason)
        self.backoff.reset()
        return out + self._maybe_reconnect(now)

    def _maybe_reconnect(self, now: float) -> list[Output]:
        if not self.reconnection or not self._wanted():
            return []
        if self.reconnection_attempts is not None and self.backoff.attempts >= self.reconnection_attempts:
            self.backoff.reset()
            return [ReconnectFailed()]
        delay = self.backoff.duration()
        self.state = ManagerState.RECONNECT_WAIT
        self._reconnect_at = now + delay / 1000
        return [ReconnectScheduled(self.backoff.attempts, delay)]

    def _wanted(self) -> bool:
        return any(s.state is not NamespaceState.IDLE for s in self._sockets.values())

    def _close_if_unwanted(self, reason: str) -> list[Output]:
        """The last namespace left: close the connection and stop reconnecting."""
        if self._wanted() or self.state is ManagerState.CLOSED:
            return []
        was_open = self.state in (ManagerState.OPEN, ManagerState.OPENING)
        self.state = ManagerState.CLOSED
        self._reconnect_at = None
        self._reconnecting = False
        self.backoff.reset()
        return [CloseEngine(reason)] if was_open else []

    # --- receiving -------------------------------------------------------------------------

    def receive(self, message: str | bytes, now: float) -> list[Output]:
        """One Engine.IO message from the server."""
        if self.state is not ManagerState.OPEN:
            return []
        try:
            packet = self._decoder.receive(message)
        except PacketError:
            return [CloseEngine(PARSE_ERROR)] + self._connection_lost(PARSE_ERROR, now)
        if packet is None:
            return []
        socket = self._sockets.get(packet.namespace)
        if socket is None:
            return []
        kind = packet.type
        if kind is PacketType.CONNECT:
            return self._on_connect(socket, packet, now)
        if kind is PacketType.CONNECT_ERROR:
            return self._on_connect_error(socket, packet)
        if socket.state is NamespaceState.CONNECTING and packet.type in (
                PacketType.EVENT, PacketType.BINARY_EVENT):
            # the Node server replays missed packets before its CONNECT answer
            if len(socket.receive_buffer) >= self.max_send_buffer:
                return [CloseEngine(PARSE_ERROR)] + self._connection_lost(PARSE_ERROR, now)
            socket.receive_buffer.append(packet)
            return []
        if socket.state is not NamespaceState.CONNECTED:
            return []   # only a connected namespace hears events, acks and disconnects
        if kind is PacketType.DISCONNECT:
            socket.state = NamespaceState.IDLE
            out = self._socket_closed(socket, IO_SERVER_DISCONNECT)
            return out + self._close_if_unwanted(IO_SERVER_DISCONNECT)
        assert socket.sid is not None
        if kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
            return self._event(socket, packet)
        assert packet.id is not None
        args = tuple(packet.data)
        if packet.id in socket.attempts:
            return self._attempt_acked(socket, packet.id, args, now)
        if socket.acks.pop(packet.id, _MISSING) is _MISSING:
            return []   # unknown or timed out: ignored
        return [AckReceived(socket.namespace, socket.sid, packet.id, args)]

    def _event(self, socket: _Socket, packet: Packet) -> list[Output]:
        """The EventReceived of an EVENT packet; with recovery on, its offset is noted and
        taken off, and an offset seen before drops it (see the module docstring)."""
        args = tuple(packet.data)
        if (socket.pid is not None and packet.id is None and len(args) > 1
                and isinstance(args[-1], str)):
            offset, args = args[-1], args[:-1]
            if socket.offsets is None:
                socket.offsets = OffsetDedupe(max_entries=self.max_send_buffer, ttl=None)
            if not socket.offsets.first(offset):
                return []
            socket.last_offset = offset
        return [EventReceived(socket.namespace, socket.sid or "", args[0], args[1:], packet.id)]

    def _on_connect(self, socket: _Socket, packet: Packet, now: float) -> list[Output]:
        if socket.state is not NamespaceState.CONNECTING:
            return []
        sid = packet.data.get("sid") if packet.data else None
        if not isinstance(sid, str):
            return [ConnectError(socket.namespace, "CONNECT answer without a sid")]
        pid = packet.data.get("pid")
        pid = pid if isinstance(pid, str) else None
        socket.recovered = pid is not None and pid == socket.pid
        if pid != socket.pid:
            socket.last_offset = None   # a new session: old offsets mean nothing to it
            socket.offsets = None
        socket.pid = pid
        socket.state = NamespaceState.CONNECTED
        socket.sid = sid
        out: list[Output] = [Connected(socket.namespace, sid, socket.recovered)]
        held, socket.receive_buffer = socket.receive_buffer, []
        for held_packet in held:
            out += self._event(socket, held_packet)
        while socket.send_buffer:   # flush what was emitted while disconnected, in order
            out += self._send(socket.send_buffer.popleft())
        return out + self._drain(socket, now, force=True)

    def _on_connect_error(self, socket: _Socket, packet: Packet) -> list[Output]:
        if socket.state is not NamespaceState.CONNECTING:
            return []
        socket.state = NamespaceState.IDLE   # refused: not retried on reconnection
        data = packet.data
        if isinstance(data, dict):
            error = ConnectError(socket.namespace, str(data.get("message", "")), data.get("data"))
        else:
            error = ConnectError(socket.namespace, str(data))
        return [error] + self._close_if_unwanted(IO_CLIENT_DISCONNECT)

    def _socket_closed(self, socket: _Socket, reason: str) -> list[Output]:
        """``socket`` stops being connected: cancel the acks of emits already sent; the
        attempt in flight of the retry queue has failed."""
        sid = socket.sid or ""
        socket.sid = None
        buffered = {p.id for p in socket.send_buffer}
        out: list[Output] = []
        for ack_id in list(socket.attempts):
            socket.acks.pop(ack_id, None)
            out += self._attempt_failed(socket, ack_id, sid, drain=False)
        out += cancel_acks(socket.acks, socket.namespace, sid, reason, keep=buffered)
        out.append(Disconnected(socket.namespace, sid, reason))
        return out

    # --- sending ---------------------------------------------------------------------------

    def _socket(self, namespace: str) -> _Socket:
        socket = self._sockets.get(namespace)
        if socket is None:
            raise LocalProtocolError(f"namespace {namespace!r} was never connected")
        return socket

    def _can_send(self, socket: _Socket) -> bool:
        return socket.state is NamespaceState.CONNECTED and self.state is ManagerState.OPEN

    def _emit_packet(self, socket: _Socket, packet: Packet, volatile: bool) -> list[Output]:
        if self._can_send(socket):
            return self._send(packet)
        if volatile:
            return []
        if len(socket.send_buffer) >= self.max_send_buffer:
            raise LocalProtocolError(f"send buffer of {socket.namespace!r} is full "
                                     f"({self.max_send_buffer} emits)")
        socket.send_buffer.append(packet)
        return []

    def emit(self, event: str, args: Sequence[Any] = (), *, namespace: str = "/",
             volatile: bool = False, now: float = 0.0) -> list[Output]:
        """Send an event (buffered while ``namespace`` is not connected, unless ``volatile``;
        with ``retries``, queued: see the module docstring)."""
        socket = self._socket(namespace)
        data = event_data(event, args)
        if self.retries is not None and not volatile:
            return self._enqueue(socket, data, False, now)[1]
        packet = Packet(PacketType.EVENT, namespace, data)
        return self._emit_packet(socket, packet, volatile)

    # --- retries: one emit in flight, acknowledged, re-sent on failure ----------------------

    def _enqueue(self, socket: _Socket, data: list, wants_ack: bool,
                 now: float) -> tuple[int, list[Output]]:
        if len(socket.queue) >= self.max_send_buffer:
            raise LocalProtocolError(f"retry queue of {socket.namespace!r} is full "
                                     f"({self.max_send_buffer} emits)")
        socket.queue_seq += 1
        handle = -socket.queue_seq
        socket.queue.append(_Queued(handle, data, wants_ack))
        return handle, self._drain(socket, now)

    def _drain(self, socket: _Socket, now: float, force: bool = False) -> list[Output]:
        """Send the head of the queue (again, with ``force``) unless it is in flight."""
        if not socket.queue or not self._can_send(socket):
            return []
        head = socket.queue[0]
        if head.pending and not force:
            return []
        for ack_id in [a for a, entry in socket.attempts.items() if entry is head]:
            del socket.attempts[ack_id]   # a forced re-send supersedes the attempt in flight
            socket.acks.pop(ack_id, None)
        head.pending = True
        head.tries += 1
        ack_id = socket.ack_ids.allocate()
        socket.attempts[ack_id] = head
        deadline = None if self.ack_timeout is None else now + self.ack_timeout / 1000
        self._ack_deadlines.add(socket.acks, socket.namespace, ack_id, deadline)
        return self._send(Packet(PacketType.EVENT, socket.namespace, head.data, ack_id))

    def _attempt_acked(self, socket: _Socket, ack_id: int, args: tuple,
                       now: float) -> list[Output]:
        entry = socket.attempts.pop(ack_id)
        socket.acks.pop(ack_id, None)
        out: list[Output] = []
        if socket.queue and socket.queue[0] is entry:
            socket.queue.popleft()
            if entry.wants_ack:
                out.append(AckReceived(socket.namespace, socket.sid or "", entry.handle, args))
        return out + self._drain(socket, now)

    def _attempt_failed(self, socket: _Socket, ack_id: int, sid: str, now: float = 0.0,
                        drain: bool = True) -> list[Output]:
        """An attempt timed out or its connection dropped: give up after ``retries`` more."""
        entry = socket.attempts.pop(ack_id)
        out: list[Output] = []
        entry.pending = False
        if entry.tries > (self.retries or 0) and socket.queue and socket.queue[0] is entry:
            socket.queue.popleft()
            if entry.wants_ack:
                out.append(AckTimedOut(socket.namespace, sid, entry.handle))
        return out + (self._drain(socket, now) if drain else [])

    def emit_with_ack(self, event: str, args: Sequence[Any] = (), *, namespace: str = "/",
                      timeout: float | None = None, volatile: bool = False,
                      now: float = 0.0) -> tuple[int, list[Output]]:
        """Send an event asking for an acknowledgement; returns its ack id and the outputs.

        Ack ids count from 0 per namespace, as socket.io-client's ``ids``.  The timeout
        (seconds) runs from now, buffered or not; when it fires a still-buffered emit is
        withdrawn from the send buffer (as in the reference).
        """
        socket = self._socket(namespace)
        if self.retries is not None and not volatile:
            # a queued emit: its handle, and ``ack_timeout`` per attempt instead of ``timeout``
            return self._enqueue(socket, event_data(event, args), True, now)
        ack_id = socket.ack_ids.allocate()
        packet = Packet(PacketType.EVENT, namespace, event_data(event, args), ack_id)
        dropped = volatile and not self._can_send(socket)
        out = self._emit_packet(socket, packet, volatile)
        if not dropped:
            deadline = None if timeout is None else now + timeout
            self._ack_deadlines.add(socket.acks, namespace, ack_id, deadline)
        return ack_id, out

    def ack(self, ack_id: int, args: Sequence[Any] = (), *, namespace: str = "/") -> list[Output]:
        """Acknowledge the server's event ``ack_id`` (dropped if no longer connected)."""
        socket = self._socket(namespace)
        if not self._can_send(socket):
            return []
        return self._send(Packet(PacketType.ACK, namespace, list(args), ack_id))

    def disconnect(self, namespace: str | None = None) -> list[Output]:
        """Leave ``namespace`` (every namespace if None): DISCONNECT if connected, then
        Disconnected "io client disconnect"; the connection closes with the last one."""
        names = list(self._sockets) if namespace is None else [namespace]
        out: list[Output] = []
        for name in names:
            socket = self._socket(name)
            if socket.state is NamespaceState.CONNECTED:
                out += self._send(Packet(PacketType.DISCONNECT, name))
                out += self._socket_closed(socket, IO_CLIENT_DISCONNECT)
            socket.state = NamespaceState.IDLE
        return out + self._close_if_unwanted(IO_CLIENT_DISCONNECT)

    # --- timers ----------------------------------------------------------------------------

    def _acks_of(self, namespace: str) -> Acks | None:
        socket = self._sockets.get(namespace)
        return socket.acks if socket is not None else None

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing scheduled)."""
        ack_deadline = self._ack_deadlines.next_deadline()
        deadlines = [ack_deadline] if ack_deadline is not None else []
        if self.state is ManagerState.RECONNECT_WAIT and self._reconnect_at is not None:
            deadlines.append(self._reconnect_at)
        return min(deadlines, default=None)

    def tick(self, now: float) -> list[Output]:
        """Fire what is due: ack timeouts, then the reconnection attempt."""
        out: list[Output] = []
        while (due := self._ack_deadlines.pop_due(now)) is not None:
            namespace, ack_id = due
            socket = self._sockets[namespace]
            if ack_id in socket.attempts:
                out += self._attempt_failed(socket, ack_id, socket.sid or "", now)
                continue
            socket.send_buffer = deque(p for p in socket.send_buffer if p.id != ack_id)
            out.append(AckTimedOut(namespace, socket.sid or "", ack_id))
        if (self.state is ManagerState.RECONNECT_WAIT and self._reconnect_at is not None
                and self._reconnect_at <= now):
            self.state = ManagerState.OPENING
            self._reconnect_at = None
            self._reconnecting = True
            out += [ReconnectAttempt(self.backoff.attempts), OpenEngine()]
        return out


_MISSING: Any = object()
