"""The Socket.IO server, sans-I/O: Engine.IO messages in, events and messages to send out.

:class:`ServerCore` sits on top of any number of Engine.IO connections ("engines"), each named
by its Engine.IO sid.  The driver reports what happens to them and carries out what comes back,
in the same words as the client core (:mod:`lablib.socketio.client_core`)::

    engine_opened(eio_sid, now)             a new Engine.IO session is open
    receive(eio_sid, message, now)          one Engine.IO message (str or bytes) arrived
    engine_closed(eio_sid, reason, now)     the Engine.IO session ended
    tick(now)                               timers: ack timeouts, the connect timeout

    -> Send(messages, eio_sid=...)          write these messages on that engine, in order
       CloseEngine(reason, eio_sid=...)     close that Engine.IO session
       ConnectReceived / EventReceived / AckReceived / AckTimedOut / AckCancelled /
       Disconnected / Undelivered (an emit that reached nobody)

The exchange (Socket.IO protocol v5, "Exchange protocol")::

    client CONNECT ns [auth]  -> ConnectReceived -> accept(): CONNECT ns {"sid": ...}
                                                  -> refuse(): CONNECT_ERROR ns {"message", "data"}
    client CONNECT unknown ns -> CONNECT_ERROR ns {"message": "Invalid namespace"}
    client EVENT ns [id]      -> EventReceived (answer an id with ack())
    client ACK ns id          -> AckReceived (if we were waiting for it; else ignored)
    client DISCONNECT ns      -> Disconnected "client namespace disconnect"
    emit()/emit_with_ack()    -> EVENT to each target's connection
    disconnect(sid)           -> DISCONNECT ns, Disconnected "server namespace disconnect"

Rules the reference server leaves to chance, decided here:

* A connection's first packet must be a CONNECT (the spec's MUST; the reference ignores the
  packet instead): anything else closes it ("protocol error").  So does a CONNECT_ERROR from a
  client.  A packet that does not decode closes it ("parse error").
* A CONNECT for a namespace the connection is already in (or is joining) is refused with
  CONNECT_ERROR ``{"message": "Already connected"}`` (the reference creates a second socket).
* Packets for a namespace the connection has not joined are ignored, as python-socketio does
  (the Node server closes the whole connection instead: "invalid state" in its client.ts).
  Packets for a namespace whose CONNECT is still pending are *held* (at most
  ``max_held_packets``; more closes the connection, "protocol error") until the application
  decides: handled in order right after the CONNECT answer, or dropped with the refusal.
  (A client may send ``40`` and ``421["echo","x"]`` in one read; python-socketio answers both.)
* While a CONNECT is pending the socket already has its sid: ``enter_room``/``leave_room``
  and emits addressed to it (by sid or by a room it entered) are kept and take effect right
  after the CONNECT answer, as with python-socketio and Node, where a connect handler may
  greet its client.  A broadcast to the whole namespace does not reach it (it is not
  connected yet) - unless it is a recovered socket: its replay was read from the log when its
  CONNECT came, so what is broadcast from then on waits with it (not twice: a packet whose
  offset is in its replay is skipped).  An ``emit`` with a ``to`` that reaches no socket at
  all (an unknown or disconnected sid, an empty room) outputs :class:`Undelivered`, never nothing.
* No namespace joined within ``connect_timeout`` ms of the connection opening: it is closed
  (the reference's ``connectTimeout``, 45000 ms).
* Ack ids of server-sent events count from 0 per namespace (the reference's ``nsp._ids``), so a
  capture matches the reference server's bytes.  python-socketio counts from 1 per sid.

Connection state recovery (``connection_state_recovery=``, off by default; see
:mod:`lablib.socketio.recovery` for the format and the bounds): the CONNECT answer carries a
``pid``; each ack-less emit gets an offset as its last argument and is logged; an unexpected
disconnect keeps the session; a CONNECT with ``{pid, offset}`` restores it
(``ConnectReceived.recovered``), and the missed packets go out right after the CONNECT answer.
(Node writes them *before* its CONNECT answer, which its client buffers; the spec's order is
kept here, and both clients accept both.)

Where the sessions live: by default in the core (an :class:`InMemorySessionStore` per
namespace, called synchronously).  A store that does I/O (Redis:
:mod:`lablib.socketio.redis_recovery`) is the driver's, ``driver_store=True``: the core then
asks for it with actions and takes the answers as calls, staying pure::

    client CONNECT {pid, offset}  -> RestoreSession(eio_sid, ns, pid, offset)
                                     (that namespace's packets are held meanwhile)
    session_restored(eio_sid, ns, restored, now) -> ConnectReceived (recovered or not)
    unexpected disconnect         -> PersistSession(ns, session)
    emit(..., offset=)            the driver appended the packet to its log first; the core
                                  adds the offset it got as the last argument

Times: ``now`` is seconds from any fixed origin (the driver's ``loop.time()``); an ack
``timeout`` is seconds, like python-socketio's ``call(timeout=...)``; ``connect_timeout`` is
milliseconds, like the reference option.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .._util import generate_sid
from ..errors import LocalProtocolError, PacketError
from .acks import AckDeadlines, AckIds, Acks, cancel_acks, event_data
from .adapter import Adapter, InMemoryAdapter
from .recovery import (RECOVERABLE_DISCONNECT_REASONS, InMemorySessionStore, RecoveryOptions,
                       Session, SessionStore)
from .packets import DEFAULT_MAX_ATTACHMENTS, Decoder, Packet, PacketType, encode
from ..events import Output
from .events import (AckReceived, AckTimedOut, CloseEngine, ConnectReceived, Disconnected,
                     EventReceived, PersistSession, RestoreSession, Send, Undelivered)
from .recovery import Restored

__all__ = ["ServerCore", "INVALID_NAMESPACE", "DEFAULT_REFUSAL"]

INVALID_NAMESPACE = "Invalid namespace"             #: the reference server's message
DEFAULT_REFUSAL = "Connection rejected by server"   #: python-socketio's default message
DEFAULT_MAX_HELD_PACKETS = 256   #: packets held behind a pending CONNECT (see the module doc)


@dataclass(slots=True)
class _Socket:
    """One client's membership of one namespace."""

    sid: str
    namespace: str
    eio_sid: str
    auth: dict | None
    acks: Acks = field(default_factory=dict)  # ack id -> deadline (or None)
    # While its CONNECT is pending (see the module docstring):
    pending: bool = False
    rooms: list[str] = field(default_factory=list)      # rooms entered meanwhile
    outbox: list[tuple] = field(default_factory=list)   # messages emitted to it meanwhile
    inbox: list[Packet] = field(default_factory=list)   # its client's packets held meanwhile
    # Connection state recovery:
    pid: str | None = None        # the private session id (None: recovery off)
    recovered: bool = False       # restored from a kept session
    data: Any = None              # the application data restored with it
    replayed: set[str] = field(default_factory=set)   # offsets in its replay (while pending)


@dataclass(slots=True)
class _Namespace:
    name: str
    adapter: Adapter
    sockets: dict[str, _Socket] = field(default_factory=dict)   # sid -> socket
    connecting: dict[str, _Socket] = field(default_factory=dict)   # sid -> pending socket
    ack_ids: AckIds = field(default_factory=AckIds)
    store: SessionStore | None = None   # connection state recovery (None: off)


@dataclass(slots=True)
class _Connection:
    """One Engine.IO connection and the namespaces it joined (or is joining)."""

    eio_sid: str
    decoder: Decoder
    connect_deadline: float | None
    sockets: dict[str, _Socket] = field(default_factory=dict)   # namespace -> socket
    pending: dict[str, _Socket] = field(default_factory=dict)   # namespace -> pending socket
    seen_connect: bool = False
    # namespace -> (its CONNECT's auth, the packets held) while the driver's store restores
    restoring: dict[str, tuple[Any, list[Packet]]] = field(default_factory=dict)


class ServerCore:
    """The sans-I/O Socket.IO server.

    ``namespaces``: the namespaces clients may join; ``"*"`` accepts any (each created when first
    asked for, and kept: as with the reference's dynamic namespaces, a client can make the
    server hold many).  ``adapter_factory(namespace)`` makes each namespace's room registry.  ``rng``
    draws the Socket.IO sids (20 characters, like the reference's base64id): by default the
    OS CSPRNG (``secrets.SystemRandom()``); pass ``random.Random(seed)`` only for reproducible
    sessions (notebooks, tests).  ``max_attachments`` bounds each binary
    packet a client sends; ``max_held_packets`` the packets held behind a pending CONNECT.

    ``connection_state_recovery``: None (off) or a dict of
    :class:`~lablib.socketio.recovery.RecoveryOptions`; ``store_factory(namespace, options)``
    makes each namespace's session store (in memory by default).  ``session_data(namespace,
    sid)`` returns the application data kept with a dropped session (the driver's).
    ``driver_store``: the driver holds the session store (see the module docstring); then
    no store is made here and ``store_factory`` is not used.
    """

    def __init__(self, *, namespaces: Iterable[str] | str = ("/",),
                 adapter_factory: Callable[[str], Adapter] = lambda namespace: InMemoryAdapter(),
                 rng: random.Random | None = None, connect_timeout: int = 45000,
                 max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
                 max_held_packets: int = DEFAULT_MAX_HELD_PACKETS,
                 connection_state_recovery: dict | bool | None = None,
                 store_factory: Callable[[str, RecoveryOptions], SessionStore] | None = None,
                 session_data: Callable[[str, str], Any] = lambda namespace, sid: None,
                 driver_store: bool = False) -> None:
        self.recovery = RecoveryOptions.from_option(connection_state_recovery)
        self.driver_store = driver_store
        self._store_factory = store_factory or (lambda namespace, options:
                                                InMemorySessionStore(options))
        self._session_data = session_data
        self.rng = rng if rng is not None else secrets.SystemRandom()
        self.connect_timeout = connect_timeout
        self.max_attachments = max_attachments
        self.max_held_packets = max_held_packets
        self._adapter_factory = adapter_factory
        self._any_namespace = namespaces == "*"
        self._namespaces: dict[str, _Namespace] = {}
        self._connections: dict[str, _Connection] = {}
        # Deadlines of pending acks, keyed by (namespace, sid) (see lablib.socketio.acks)
        self._ack_deadlines: AckDeadlines[tuple[str, str]] = AckDeadlines(self._acks_of)
        if not self._any_namespace:
            for name in namespaces:
                self.add_namespace(name)

    # --- namespaces and rooms -------------------------------------------------------------

    def add_namespace(self, name: str) -> None:
        """Let clients join ``name`` (idempotent)."""
        if not name.startswith("/"):
            raise LocalProtocolError(f"a namespace starts with '/': {name!r}")
        if name not in self._namespaces:
            ns = self._namespaces[name] = _Namespace(name, self._adapter_factory(name))
            if self.recovery is not None and not self.driver_store:
                ns.store = self._store_factory(name, self.recovery)

    def adapter(self, namespace: str = "/") -> Adapter:
        """The room registry of ``namespace``."""
        return self._namespace(namespace).adapter

    def enter_room(self, sid: str, room: str, namespace: str = "/") -> None:
        """Put ``sid`` in ``room`` (a pending socket enters it when accepted)."""
        socket = self._socket(sid, namespace, pending=True)
        if socket.pending:
            if room != sid and room not in socket.rooms:
                socket.rooms.append(room)
            return
        self.adapter(namespace).join(sid, room)

    def leave_room(self, sid: str, room: str, namespace: str = "/") -> None:
        socket = self._socket(sid, namespace, pending=True)
        if socket.pending:
            if room in socket.rooms:
                socket.rooms.remove(room)
            return
        self.adapter(namespace).leave(sid, room)

    def rooms(self, sid: str, namespace: str = "/") -> list[str]:
        """The rooms ``sid`` is in (its own room first), pending sockets included."""
        ns = self._namespace(namespace)
        pending = ns.connecting.get(sid)
        if pending is not None:
            return [sid, *pending.rooms]
        return ns.adapter.rooms_of(sid)

    def sids(self, namespace: str = "/") -> list[str]:
        """The connected sids of ``namespace``, in connection order."""
        return list(self._namespace(namespace).sockets)

    def eio_sid_of(self, sid: str, namespace: str = "/") -> str:
        return self._socket(sid, namespace).eio_sid

    def auth_of(self, sid: str, namespace: str = "/") -> dict | None:
        return self._socket(sid, namespace).auth

    def is_recovered(self, sid: str, namespace: str = "/") -> bool:
        """Was ``sid``'s session restored by connection state recovery (pending included)?"""
        return self._socket(sid, namespace, pending=True).recovered

    def restored_data(self, sid: str, namespace: str = "/") -> Any:
        """The application data restored with ``sid``'s session (None if not recovered)."""
        return self._socket(sid, namespace, pending=True).data

    def store(self, namespace: str = "/") -> SessionStore | None:
        """The session store of ``namespace`` (None when recovery is off)."""
        return self._namespace(namespace).store

    def _namespace(self, name: str) -> _Namespace:
        try:
            return self._namespaces[name]
        except KeyError:
            raise LocalProtocolError(f"unknown namespace {name!r}") from None

    def _socket(self, sid: str, namespace: str, *, pending: bool = False) -> _Socket:
        """The connected socket ``sid`` (or the pending one too, with ``pending=True``)."""
        ns = self._namespace(namespace)
        socket = ns.sockets.get(sid) or (ns.connecting.get(sid) if pending else None)
        if socket is None:
            raise LocalProtocolError(f"no socket {sid!r} in namespace {namespace!r}")
        return socket

    def is_connected(self, sid: str, namespace: str = "/") -> bool:
        ns = self._namespaces.get(namespace)
        return ns is not None and sid in ns.sockets

    def is_connecting(self, sid: str, namespace: str = "/") -> bool:
        """True while ``sid``'s CONNECT waits for accept()/refuse()."""
        ns = self._namespaces.get(namespace)
        return ns is not None and sid in ns.connecting

    # --- the Engine.IO connections ---------------------------------------------------------

    def engine_opened(self, eio_sid: str, now: float) -> list[Output]:
        """A new Engine.IO session is open; it has ``connect_timeout`` ms to join a namespace."""
        if eio_sid in self._connections:
            raise LocalProtocolError(f"connection {eio_sid!r} is already open")
        decoder = Decoder(max_attachments=self.max_attachments)
        self._connections[eio_sid] = _Connection(eio_sid, decoder, now + self.connect_timeout / 1000)
        return []

    def engine_closed(self, eio_sid: str, reason: str, now: float) -> list[Output]:
        """The Engine.IO session ended (``reason`` from Engine.IO: "transport close", ...)."""
        conn = self._connections.pop(eio_sid, None)
        if conn is None:
            return []
        out: list[Output] = []
        for socket in list(conn.pending.values()):
            if socket.recovered:   # dropped again before its answer: keep the session again
                out += self._persist_session(socket, reason, now)
            out += self._drop_pending(socket, reason)
        for socket in list(conn.sockets.values()):
            out += self._persist_session(socket, reason, now)
            out += self._remove_socket(socket, reason)
        return out

    def _persist_session(self, socket: _Socket, reason: str, now: float) -> list[Output]:
        """Recovery: keep the session of a socket that dropped (not one that left)."""
        if self.recovery is None or socket.pid is None \
                or reason not in RECOVERABLE_DISCONNECT_REASONS:
            return []
        if socket.pending:   # a restored socket not yet accepted: its state is on the socket
            rooms, data = (socket.sid, *socket.rooms), socket.data
        else:
            rooms = tuple(self._namespaces[socket.namespace].adapter.rooms_of(socket.sid))
            data = self._session_data(socket.namespace, socket.sid)
        return self._keep(socket.namespace, Session(socket.sid, socket.pid, rooms, data, now))

    def _keep(self, namespace: str, session: Session) -> list[Output]:
        store = self._namespaces[namespace].store
        if store is None:   # the driver's store
            return [PersistSession(namespace, session)]
        store.persist(session)
        return []

    def receive(self, eio_sid: str, message: str | bytes, now: float) -> list[Output]:
        """One Engine.IO message from the client on ``eio_sid``."""
        conn = self._connections.get(eio_sid)
        if conn is None:
            return []
        try:
            packet = conn.decoder.receive(message)
        except PacketError:
            return self._close(conn, "parse error")
        if packet is None:
            return []
        if packet.type is PacketType.CONNECT:
            return self._on_connect(conn, packet, now)
        if not conn.seen_connect or packet.type is PacketType.CONNECT_ERROR:
            return self._close(conn, "protocol error")
        socket = conn.sockets.get(packet.namespace)
        if socket is None:
            pending = conn.pending.get(packet.namespace)
            restoring = conn.restoring.get(packet.namespace)
            if pending is None and restoring is None:
                return []   # not joined: ignored, as python-socketio does (see above)
            inbox = pending.inbox if pending is not None else restoring[1]
            if len(inbox) >= self.max_held_packets:
                return self._close(conn, "protocol error")
            inbox.append(packet)   # handled once the CONNECT is accepted
            return []
        return self._dispatch(socket, packet)

    def _dispatch(self, socket: _Socket, packet: Packet) -> list[Output]:
        """A packet of a connected socket: DISCONNECT, EVENT or ACK."""
        if packet.type is PacketType.DISCONNECT:
            return self._remove_socket(socket, "client namespace disconnect")
        args = tuple(packet.data)
        if packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT):
            return [EventReceived(socket.namespace, socket.sid, args[0], args[1:], packet.id)]
        assert packet.id is not None   # an ACK always has one
        if socket.acks.pop(packet.id, _MISSING) is _MISSING:
            return []   # not waiting for it (unknown, or timed out): ignored
        return [AckReceived(socket.namespace, socket.sid, packet.id, args)]

    # --- namespace connection ----------------------------------------------------------------

    def _on_connect(self, conn: _Connection, packet: Packet, now: float = 0.0) -> list[Output]:
        conn.seen_connect = True
        name = packet.namespace
        if name not in self._namespaces and self._any_namespace:
            self.add_namespace(name)
        if name not in self._namespaces:
            return self._send(conn.eio_sid, Packet(PacketType.CONNECT_ERROR, name,
                                                   {"message": INVALID_NAMESPACE}))
        if name in conn.sockets or name in conn.pending or name in conn.restoring:
            return self._send(conn.eio_sid, Packet(PacketType.CONNECT_ERROR, name,
                                                   {"message": "Already connected"}))
        ns, auth = self._namespaces[name], packet.data
        pid, offset = _pid_and_offset(auth) if self.recovery is not None else (None, None)
        if pid is None or offset is None:
            return self._request(conn, name, auth, None)
        if ns.store is None:   # the driver's store: ask it, hold this namespace's packets
            conn.restoring[name] = (auth, [])
            return [RestoreSession(conn.eio_sid, name, pid, offset)]
        return self._request(conn, name, auth, ns.store.restore(pid, offset, now))

    def session_restored(self, eio_sid: str, namespace: str, restored: Restored | None,
                         now: float) -> list[Output]:
        """The driver's store answered a :class:`RestoreSession`: the CONNECT goes on, with
        the session (recovered) or without (a new one).  If the client left meanwhile, the
        session is kept again (:class:`PersistSession`)."""
        conn = self._connections.get(eio_sid)
        waiting = conn.restoring.pop(namespace, None) if conn is not None else None
        if waiting is None:
            if restored is None:
                return []
            return self._keep(namespace, restored.session)
        auth, held = waiting
        out = self._request(conn, namespace, auth, restored)
        conn.pending[namespace].inbox[:0] = held
        return out

    def _request(self, conn: _Connection, name: str, auth: Any,
                 restored: Restored | None) -> list[Output]:
        """The pending socket (restored, or new) and the ConnectReceived for it."""
        socket = self._recover(conn, name, auth, restored)
        if socket is None:
            socket = _Socket(self._new_sid(), name, conn.eio_sid, auth, pending=True)
            if self.recovery is not None:
                socket.pid = generate_sid(self.rng)
        conn.pending[name] = socket
        self._namespaces[name].connecting[socket.sid] = socket
        return [ConnectReceived(conn.eio_sid, name, socket.sid, auth, socket.recovered)]

    def _recover(self, conn: _Connection, name: str, auth: Any,
                 restored: Restored | None) -> _Socket | None:
        """Recovery: the pending socket restored from the store's answer, or None.

        It has the kept sid, pid, rooms and data; the missed packets wait in its outbox and
        go out right after the CONNECT answer."""
        ns = self._namespaces[name]
        if restored is None:
            return None
        session = restored.session
        if session.sid in ns.sockets or session.sid in ns.connecting:
            return None   # that sid is live again (a session is restored once: not expected)
        socket = _Socket(session.sid, name, conn.eio_sid, auth, pending=True, pid=session.pid,
                         recovered=True, data=session.data)
        socket.rooms = [room for room in session.rooms if room != session.sid]
        socket.outbox = [tuple(encode(Packet(PacketType.EVENT, name, data)))
                         for data in restored.missed]
        socket.replayed = {data[-1] for data in restored.missed if isinstance(data[-1], str)}
        return socket

    def _new_sid(self) -> str:
        while True:
            sid = generate_sid(self.rng)
            if all(sid not in ns.sockets and sid not in ns.connecting
                   for ns in self._namespaces.values()):
                return sid

    def accept(self, eio_sid: str, namespace: str = "/") -> list[Output]:
        """Accept the pending connection: the socket joins its own room (then those entered
        meanwhile), CONNECT {"sid"} goes out, then what was emitted to it meanwhile, then the
        client's packets held behind its CONNECT are handled, in order.

        Returns [] if the request is gone (the client left or the connection closed meanwhile).
        """
        conn = self._connections.get(eio_sid)
        socket = conn.pending.pop(namespace, None) if conn else None
        if conn is None or socket is None:
            return []
        ns = self._namespaces[namespace]
        del ns.connecting[socket.sid]
        socket.pending = False
        conn.sockets[namespace] = socket
        conn.connect_deadline = None
        ns.sockets[socket.sid] = socket
        for room in (socket.sid, *socket.rooms):
            ns.adapter.join(socket.sid, room)
        answer = {"sid": socket.sid} if socket.pid is None else {"sid": socket.sid, "pid": socket.pid}
        out = self._send(eio_sid, Packet(PacketType.CONNECT, namespace, answer))
        out += [Send(eio_sid=eio_sid, messages=messages) for messages in socket.outbox]
        inbox = socket.inbox
        socket.rooms, socket.outbox, socket.inbox = [], [], []
        socket.replayed = set()
        for packet in inbox:
            if not self.is_connected(socket.sid, namespace):
                break   # a held DISCONNECT: what followed it is for a socket that left
            out += self._dispatch(socket, packet)
        return out

    def refuse(self, eio_sid: str, namespace: str = "/", message: str = DEFAULT_REFUSAL,
               data: Any = None) -> list[Output]:
        """Refuse the pending connection: CONNECT_ERROR {"message": ..., "data": ...}.

        ``data`` is left out of the JSON when None (as JSON.stringify drops ``undefined``).
        """
        conn = self._connections.get(eio_sid)
        socket = conn.pending.pop(namespace, None) if conn else None
        if conn is None or socket is None:
            return []
        error: dict[str, Any] = {"message": message}
        if data is not None:
            error["data"] = data
        out = self._send(eio_sid, Packet(PacketType.CONNECT_ERROR, namespace, error))
        return out + self._drop_pending(socket, "connection refused")

    def _drop_pending(self, socket: _Socket, reason: str) -> list[Output]:
        """Forget a pending socket: what was emitted to it is not delivered (one Undelivered
        per emit), its held packets are dropped, its acks cancelled."""
        self._namespaces[socket.namespace].connecting.pop(socket.sid, None)
        out: list[Output] = [Undelivered(socket.namespace, socket.sid, reason)
                             for _ in socket.outbox]   # one per packet kept for it
        out += cancel_acks(socket.acks, socket.namespace, socket.sid, reason)
        socket.outbox, socket.inbox, socket.rooms = [], [], []
        return out

    # --- sending ---------------------------------------------------------------------------

    def _send(self, eio_sid: str, packet: Packet) -> list[Output]:
        return [Send(eio_sid=eio_sid, messages=tuple(encode(packet)))]

    def emit(self, event: str, args: Sequence[Any] = (), *, namespace: str = "/",
             to: str | Iterable[str] | None = None,
             skip_sids: str | Iterable[str] = (), now: float = 0.0,
             offset: str | None = None) -> list[Output]:
        """Send an event to every socket of ``namespace``, or to the members of ``to`` (a room,
        a sid - each sid is a room - or several), except ``skip_sids``.

        The packet is encoded once; each target's connection gets the same messages.  A
        pending socket that ``to`` names (by sid or by a room it entered) gets them right
        after its CONNECT answer.  A ``to`` that reaches nobody outputs :class:`Undelivered`.

        With connection state recovery the packet gets an offset as its last argument and is
        logged (``now``: seconds, for the log's age limit), even if it reaches nobody now: a
        dropped client in ``to`` may come back for it.  With the driver's store, the driver
        logged it and passes the ``offset`` it got (None: the packet goes without one).
        """
        data = event_data(event, args)
        store = self._namespace(namespace).store
        if offset is not None:
            if store is not None:
                raise LocalProtocolError("the core's own store gives the offsets")
            data.append(offset)
        elif store is not None:
            to = to if to is None or isinstance(to, str) else list(to)
            skip_sids = skip_sids if isinstance(skip_sids, str) else list(skip_sids)
            store.append(data, None if to is None else [to] if isinstance(to, str) else to,
                         [skip_sids] if isinstance(skip_sids, str) else skip_sids, now)
        packet = Packet(PacketType.EVENT, namespace, data)
        return self._deliver(packet, namespace, to, skip_sids)[1]

    def _targets(self, ns: _Namespace, to: str | Iterable[str] | None,
                 skip_sids: str | Iterable[str]) -> tuple[list[_Socket], list[_Socket]]:
        """(connected sockets, pending sockets) a broadcast to ``to`` reaches."""
        connected = [ns.sockets[sid] for sid in ns.adapter.broadcast_targets(to, skip_sids)
                     if sid in ns.sockets]
        if not ns.connecting:
            return connected, []
        skip = {skip_sids} if isinstance(skip_sids, str) else set(skip_sids)
        if to is None:   # a recovered socket is a member already: its replay was read
            return connected, [socket for sid, socket in ns.connecting.items()
                               if socket.recovered and sid not in skip]
        names = {to} if isinstance(to, str) else set(to)
        pending = [socket for sid, socket in ns.connecting.items() if sid not in skip
                   and (sid in names or not names.isdisjoint(socket.rooms))]
        return connected, pending

    def _deliver(self, packet: Packet, namespace: str, to: str | Iterable[str] | None,
                 skip_sids: str | Iterable[str],
                 deadline: float | None = None) -> tuple[list[str], list[Output]]:
        """Send ``packet`` (encoded once) to the targets; register its ack id (if any) with
        each.  Returns the sids reached and the outputs."""
        ns = self._namespace(namespace)
        connected, pending = self._targets(ns, to, skip_sids)
        if pending and packet.id is None and packet.data and isinstance(packet.data[-1], str):
            kept = [socket for socket in pending   # in its replay already: not twice
                    if packet.data[-1] not in socket.replayed]
            if not connected and not kept:
                return [], []
            pending = kept
        if not connected and not pending:
            if to is None:
                return [], []   # a broadcast to an empty namespace: nobody to tell
            return [], [Undelivered(namespace, _describe(to), f"no socket in {_describe(to)!r}")]
        messages = tuple(encode(packet))
        for socket in pending:
            socket.outbox.append(messages)
        out: list[Output] = [Send(eio_sid=socket.eio_sid, messages=messages) for socket in connected]
        reached = [socket.sid for socket in (*connected, *pending)]
        if packet.id is not None:
            for socket in (*connected, *pending):
                self._ack_deadlines.add(socket.acks, (namespace, socket.sid), packet.id, deadline)
        return reached, out

    def emit_with_acks(self, event: str, args: Sequence[Any] = (), *, namespace: str = "/",
                       to: str | Iterable[str] | None = None,
                       skip_sids: str | Iterable[str] = (), timeout: float | None = None,
                       now: float = 0.0) -> tuple[int, list[str], list[Output]]:
        """:meth:`emit` asking every recipient for an acknowledgement.

        One packet, encoded once, with one ack id (ids count per namespace, so no two sockets
        of the namespace wait on the same id for different events): each recipient's ACK
        comes back as its own AckReceived.  Returns (the ack id, the sids reached, outputs).
        """
        ack_id = self._next_ack_id(namespace)
        packet = Packet(PacketType.EVENT, namespace, event_data(event, args), ack_id)
        deadline = None if timeout is None else now + timeout
        reached, out = self._deliver(packet, namespace, to, skip_sids, deadline)
        return ack_id, reached, out

    def _next_ack_id(self, namespace: str) -> int:
        return self._namespace(namespace).ack_ids.allocate()

    def emit_with_ack(self, sid: str, event: str, args: Sequence[Any] = (), *,
                      namespace: str = "/", timeout: float | None = None,
                      now: float = 0.0) -> tuple[int, list[Output]]:
        """Send an event to one socket asking for an acknowledgement.

        Returns the ack id and the outputs.  Its ACK comes back as AckReceived; if ``timeout``
        seconds pass first, :meth:`tick` reports AckTimedOut and a late ACK is ignored.
        """
        socket = self._socket(sid, namespace)
        ack_id = self._next_ack_id(namespace)
        packet = Packet(PacketType.EVENT, namespace, event_data(event, args), ack_id)
        deadline = None if timeout is None else now + timeout
        self._ack_deadlines.add(socket.acks, (namespace, sid), ack_id, deadline)
        return ack_id, self._send(socket.eio_sid, packet)

    def ack(self, sid: str, ack_id: int, args: Sequence[Any] = (), *,
            namespace: str = "/") -> list[Output]:
        """Acknowledge the client's event ``ack_id`` with ``args`` (at most once per id: the
        core does not remember which ids it was asked for, the driver's callback must)."""
        socket = self._socket(sid, namespace)
        return self._send(socket.eio_sid, Packet(PacketType.ACK, namespace, list(args), ack_id))

    # --- disconnection -----------------------------------------------------------------------

    def disconnect(self, sid: str, namespace: str = "/", *, close: bool = False) -> list[Output]:
        """Take ``sid`` out of ``namespace``: DISCONNECT to the client, then Disconnected.

        ``close=True`` does it for every namespace of that client's connection, then closes
        the Engine.IO connection ("forced server close"), like the reference's
        ``socket.disconnect(true)``.
        """
        socket = self._socket(sid, namespace)
        if not close:
            return self._send(socket.eio_sid, Packet(PacketType.DISCONNECT, namespace)) + \
                self._remove_socket(socket, "server namespace disconnect")
        conn = self._connections[socket.eio_sid]
        out: list[Output] = []
        for each in list(conn.sockets.values()):
            out += self._send(each.eio_sid, Packet(PacketType.DISCONNECT, each.namespace))
            out += self._remove_socket(each, "server namespace disconnect")
        return out + self._close(conn, "forced server close")

    def _remove_socket(self, socket: _Socket, reason: str) -> list[Output]:
        ns = self._namespaces[socket.namespace]
        ns.sockets.pop(socket.sid, None)
        ns.adapter.leave_all(socket.sid)
        conn = self._connections.get(socket.eio_sid)
        if conn is not None:
            conn.sockets.pop(socket.namespace, None)
        out: list[Output] = list(cancel_acks(socket.acks, socket.namespace, socket.sid, reason))
        out.append(Disconnected(socket.namespace, socket.sid, reason))
        return out

    def _close(self, conn: _Connection, reason: str) -> list[Output]:
        """Drop every socket of ``conn`` and ask the driver to close it."""
        out: list[Output] = []
        for socket in list(conn.pending.values()):
            out += self._drop_pending(socket, reason)
        conn.pending.clear()
        for socket in list(conn.sockets.values()):
            out += self._remove_socket(socket, reason)
        self._connections.pop(conn.eio_sid, None)
        return out + [CloseEngine(eio_sid=conn.eio_sid, reason=reason)]

    # --- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing scheduled)."""
        deadlines = [c.connect_deadline for c in self._connections.values()
                     if c.connect_deadline is not None]
        ack_deadline = self._ack_deadlines.next_deadline()
        if ack_deadline is not None:
            deadlines.append(ack_deadline)
        return min(deadlines, default=None)

    def _acks_of(self, key: tuple[str, str]) -> Acks | None:
        namespace, sid = key
        ns = self._namespaces.get(namespace)
        socket = (ns.sockets.get(sid) or ns.connecting.get(sid)) if ns else None
        return socket.acks if socket else None

    def tick(self, now: float) -> list[Output]:
        """Fire what is due: ack timeouts, then connections that joined no namespace in time."""
        out: list[Output] = []
        while (due := self._ack_deadlines.pop_due(now)) is not None:
            (namespace, sid), ack_id = due
            out.append(AckTimedOut(namespace, sid, ack_id))
        for conn in list(self._connections.values()):
            if conn.connect_deadline is not None and conn.connect_deadline <= now and not conn.sockets:
                out += self._close(conn, "connect timeout")
        return out


def _describe(to: str | Iterable[str]) -> str:
    return to if isinstance(to, str) else ",".join(to)


_MISSING: Any = object()


def _pid_and_offset(auth: Any) -> tuple[str | None, str | None]:
    """A recovering client's ``{pid, offset}`` from its CONNECT auth (None if absent)."""
    if not isinstance(auth, dict):
        return None, None
    pid, offset = auth.get("pid"), auth.get("offset")
    return (pid if isinstance(pid, str) else None, offset if isinstance(offset, str) else None)
