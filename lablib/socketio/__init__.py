"""Socket.IO v5: packets and binary attachments, rooms, the sans-I/O server and client cores,
and the asyncio drivers :class:`Server` / :class:`serve` and :class:`AsyncClient`::

    from lablib.socketio import AsyncClient, Server, serve

The cores are sans-I/O (no sockets, no clock of their own); the drivers run them over
:mod:`lablib.engineio`.  See :mod:`lablib.socketio.packets` for the wire grammar,
:mod:`lablib.socketio.adapter` for rooms, :mod:`lablib.socketio.server_core` and
:mod:`lablib.socketio.client_core` for the two sides of the exchange (their outputs are in
:mod:`lablib.socketio.events`), and
:mod:`lablib.socketio.backoff` for the client's reconnection delays,
:mod:`lablib.socketio.recovery` for connection state recovery (sessions and the packet log), and
:mod:`lablib.socketio.dedupe` for exactly-once processing over at-least-once delivery.
"""

from .packets import (DEFAULT_MAX_ATTACHMENTS, MAX_ACK_ID, RESERVED_EVENTS, Decoder, Packet,
                      PacketType, decode, deconstruct, encode, has_binary, reconstruct)
from .adapter import Adapter, InMemoryAdapter
from .backoff import Backoff, backoff_delay
from .recovery import InMemorySessionStore, RecoveryOptions, SessionStore
from .dedupe import Dedupe, OffsetDedupe
from .server_core import ServerCore
from .client_core import ClientCore, ManagerState, NamespaceState
from .events import (IO_CLIENT_DISCONNECT, IO_SERVER_DISCONNECT, PARSE_ERROR, PING_TIMEOUT,
                     TRANSPORT_CLOSE, TRANSPORT_ERROR, AckCancelled, AckReceived, AckTimedOut,
                     CloseEngine, ConnectError, Connected, ConnectReceived, Disconnected,
                     EventReceived, OpenEngine, PersistSession, Reconnected, ReconnectAttempt,
                     ReconnectError, ReconnectFailed, ReconnectScheduled, RestoreSession, Send,
                     Undelivered)
from .server import ConnectionRefusedError, DisconnectedError, Server, serve
from .client import AsyncClient, ConnectionError, NamespaceRefusedError, TransportError

__all__ = [
    "DEFAULT_MAX_ATTACHMENTS", "MAX_ACK_ID", "RESERVED_EVENTS", "Decoder", "Packet", "PacketType",
    "decode", "deconstruct", "encode", "has_binary", "reconstruct",
    "Adapter", "InMemoryAdapter", "Backoff", "backoff_delay",
    "RecoveryOptions", "SessionStore", "InMemorySessionStore", "Dedupe", "OffsetDedupe",
    "ServerCore", "ClientCore", "ManagerState", "NamespaceState",
    "IO_SERVER_DISCONNECT", "IO_CLIENT_DISCONNECT", "PING_TIMEOUT", "TRANSPORT_CLOSE",
    "TRANSPORT_ERROR", "PARSE_ERROR",
    "AckCancelled", "AckReceived", "AckTimedOut", "CloseEngine", "ConnectError", "Connected",
    "ConnectReceived", "Disconnected", "EventReceived", "OpenEngine", "PersistSession",
    "Reconnected", "ReconnectAttempt", "ReconnectError", "ReconnectFailed", "ReconnectScheduled",
    "RestoreSession", "Send", "Undelivered",
    "Server", "serve", "ConnectionRefusedError", "DisconnectedError",
    "AsyncClient", "ConnectionError", "NamespaceRefusedError", "TransportError",
]
