"""What the sans-I/O Socket.IO cores return: events for the application, actions for the driver.

Every method of :class:`~lablib.socketio.server_core.ServerCore` and
:class:`~lablib.socketio.client_core.ClientCore` returns a ``list[Output]``.  An
:class:`Event` is something the application should hear about (an event arrived, an ack came
back, a socket disconnected); an :class:`Action` is something the driver must do on the
Engine.IO connection, *the engine*, the layer below (send these messages, close it, open a new
one).  Both cores speak of the engine the same way: the driver tells them ``engine_opened`` and
``engine_closed``; they answer :class:`Send` and :class:`CloseEngine` (and, on the client,
:class:`OpenEngine`).  A server has one engine per client, so its actions name it (``eio_sid``);
a client has one, so ``eio_sid`` stays None.

The cores speak to Engine.IO in *messages*: ``str`` (an Engine.IO text message) and ``bytes``
(a binary message).  A Socket.IO packet is one text message followed by its binary attachments
(:func:`lablib.socketio.packets.encode`), and the driver must send them in order, without
interleaving another packet's messages on the same connection.

Disconnect reasons are the reference's strings::

    server side                            client side
    "client namespace disconnect"          "io client disconnect"   (we left)
    "server namespace disconnect"          "io server disconnect"   (the server sent DISCONNECT)
    "forced server close"                  "parse error"            (the server sent garbage)
    "parse error" / "protocol error"       Engine.IO's: "transport close", "ping timeout", ...
    Engine.IO's: "transport close", "ping timeout", "transport error", ...

The client side's are socket.io-client's ``Socket.DisconnectReason``, exported by name below
(and from :mod:`lablib.socketio.client`) so that an application compares with a constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..events import Action, Event

__all__ = [
    "IO_SERVER_DISCONNECT", "IO_CLIENT_DISCONNECT", "PING_TIMEOUT", "TRANSPORT_CLOSE",
    "TRANSPORT_ERROR", "PARSE_ERROR",
    "ConnectReceived", "Connected", "ConnectError", "EventReceived", "AckReceived",
    "AckTimedOut", "AckCancelled", "Disconnected", "Undelivered",
    "ReconnectScheduled", "ReconnectAttempt", "Reconnected", "ReconnectError", "ReconnectFailed",
    "Send", "CloseEngine", "OpenEngine",
    "RestoreSession", "PersistSession",
]

# --- disconnect reasons of the client (socket.io-client's DisconnectReason) --------------------

IO_SERVER_DISCONNECT = "io server disconnect"   #: the server sent DISCONNECT (no reconnection)
IO_CLIENT_DISCONNECT = "io client disconnect"   #: we called disconnect() (no reconnection)
PING_TIMEOUT = "ping timeout"           #: the server's pings stopped coming (Engine.IO)
TRANSPORT_CLOSE = "transport close"     #: the connection was closed (by the server, or cut)
TRANSPORT_ERROR = "transport error"     #: the connection failed (e.g. a network error)
PARSE_ERROR = "parse error"             #: the server sent a packet we cannot decode


def _repr_shown_when_true(event: Any, flag: str) -> str:
    """The dataclass repr, with ``flag`` shown only when true: a flag added for an optional
    feature (recovery) leaves the reprs that notebooks print without it unchanged."""
    names = [f.name for f in fields(event) if f.name != flag or getattr(event, flag)]
    inner = ", ".join(f"{name}={getattr(event, name)!r}" for name in names)
    return f"{type(event).__name__}({inner})"


# --- events, both sides -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConnectReceived(Event):
    """Server: a client asks to join ``namespace``.  Answer with ``accept``/``refuse``.

    ``sid`` is the Socket.IO sid the socket will have if accepted (drawn from the core's rng).
    """

    eio_sid: str       #: the Engine.IO connection it came over
    namespace: str
    sid: str
    auth: dict | None  #: the CONNECT packet's data (None if it had none)
    #: connection state recovery: the client's ``{pid, offset}`` restored a kept session (its
    #: sid, rooms and data; the missed packets follow the CONNECT answer)
    recovered: bool = False

    def __repr__(self) -> str:
        return _repr_shown_when_true(self, "recovered")


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """Client: the server accepted us in ``namespace`` and gave us ``sid``."""

    namespace: str
    sid: str
    #: connection state recovery: the server restored our session (same sid and pid)
    recovered: bool = False

    def __repr__(self) -> str:
        return _repr_shown_when_true(self, "recovered")


@dataclass(frozen=True, slots=True)
class ConnectError(Event):
    """Client: the server refused ``namespace`` (a CONNECT_ERROR packet)."""

    namespace: str
    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class EventReceived(Event):
    """An EVENT arrived.  If ``ack_id`` is not None the sender waits for an ``ack(...)``.

    On the server ``sid`` is the sender's; on the client it is our own sid in that namespace.
    """

    namespace: str
    sid: str
    event: str
    args: tuple
    ack_id: int | None = None


@dataclass(frozen=True, slots=True)
class AckReceived(Event):
    """The peer acknowledged our event ``ack_id`` with ``args``."""

    namespace: str
    sid: str
    ack_id: int
    args: tuple


@dataclass(frozen=True, slots=True)
class AckTimedOut(Event):
    """No ACK for our event ``ack_id`` within its timeout; a late ACK will be ignored."""

    namespace: str
    sid: str
    ack_id: int


@dataclass(frozen=True, slots=True)
class AckCancelled(Event):
    """Our event ``ack_id`` will never be acknowledged: the socket disconnected (``reason``)."""

    namespace: str
    sid: str
    ack_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """The socket ``sid`` left ``namespace`` (see the module docstring for the reasons)."""

    namespace: str
    sid: str
    reason: str


@dataclass(frozen=True, slots=True)
class Undelivered(Event):
    """Server: a packet reached nobody, and the driver should say so (log it, count it).

    An ``emit`` whose ``to`` names no socket (an unknown or disconnected sid, an empty room),
    or one kept for a pending socket that was then refused or lost (``to`` is its sid).
    Nothing is sent; it is not an error (the reference silently does nothing).
    """

    namespace: str
    to: str       #: the sid or room(s) it was addressed to
    reason: str


# --- actions, server only: a session store the driver holds (recovery through Redis) -------------

@dataclass(frozen=True, slots=True)
class RestoreSession(Action):
    """Server: look up a kept session (``store.restore(pid, offset)``) and hand the answer to
    ``core.session_restored(eio_sid, namespace, restored, now)``.

    Output only when the session store is the driver's (``ServerCore(driver_store=True)``):
    a store that does I/O cannot be called inside the sans-I/O core.  Until the answer
    comes, the client's packets for that namespace are held.
    """

    eio_sid: str
    namespace: str
    pid: str
    offset: str


@dataclass(frozen=True, slots=True)
class PersistSession(Action):
    """Server: keep this dropped socket's session (``store.persist(session)``)."""

    namespace: str
    session: Any   #: a :class:`~lablib.socketio.recovery.Session`


# --- events, client only: reconnection ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReconnectScheduled(Event):
    """The connection is down; attempt number ``attempt`` will start in ``delay_ms``."""

    attempt: int
    delay_ms: int


@dataclass(frozen=True, slots=True)
class ReconnectAttempt(Event):
    """Attempt number ``attempt`` starts now (comes with an :class:`OpenEngine`)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Reconnected(Event):
    """A new Engine.IO connection is open after ``attempt`` attempts."""

    attempt: int


@dataclass(frozen=True, slots=True)
class ReconnectError(Event):
    """Attempt number ``attempt`` failed (``error`` is the driver's description)."""

    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class ReconnectFailed(Event):
    """``reconnection_attempts`` attempts failed; the client gives up."""


# --- actions ----------------------------------------------------------------------------------

def _repr_engine_first(action: Any) -> str:
    """``Send(eio_sid='E1', messages=(...))`` on a server, ``Send(messages=(...))`` on a client:
    which engine first, then what; no ``eio_sid`` where there is only one engine."""
    names = ["eio_sid"] if action.eio_sid is not None else []
    names += [f.name for f in fields(action) if f.name != "eio_sid"]
    inner = ", ".join(f"{name}={getattr(action, name)!r}" for name in names)
    return f"{type(action).__name__}({inner})"


@dataclass(frozen=True, slots=True)
class Send(Action):
    """Send ``messages`` (one text message, then any attachments) on the engine, in order.

    Server: on the Engine.IO connection ``eio_sid``.  Client: on its one connection.
    """

    messages: tuple[str | bytes, ...]
    eio_sid: str | None = field(default=None, kw_only=True)

    def __repr__(self) -> str:
        return _repr_engine_first(self)


@dataclass(frozen=True, slots=True)
class CloseEngine(Action):
    """Close the engine, after sending what precedes this.

    Server: the Engine.IO connection ``eio_sid``.  Client: its connection; the core already
    counts it as closed (a later ``engine_closed`` is ignored), and if a reconnection follows,
    the core schedules it itself.
    """

    reason: str
    eio_sid: str | None = field(default=None, kw_only=True)

    def __repr__(self) -> str:
        return _repr_engine_first(self)


@dataclass(frozen=True, slots=True)
class OpenEngine(Action):
    """Client: open a new Engine.IO connection, then call ``engine_opened`` or ``engine_failed``."""
