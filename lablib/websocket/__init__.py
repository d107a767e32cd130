"""RFC 6455 WebSocket: handshake (§4), frames (§5), a sans-I/O connection, asyncio drivers;
RFC 7692 permessage-deflate (:mod:`.deflate`).

The public API, from the bytes up::

    from lablib.websocket import Connection, Role, TextReceived   # sans-I/O
    from lablib.websocket import connect, serve                   # asyncio
"""

from .deflate import DeflateOptions, DeflateParameters
from .frames import CloseCode, Frame, FrameParser, Opcode, apply_mask, encode_frame
from .handshake import ClientHandshake, ServerHandshake, accept_key, generate_key
from .events import (Accepted, BinaryReceived, CloseReceived, FrameReceived, PingReceived,
                     PongReceived, Rejected, RequestReceived, TextReceived, WebSocketClosed)
from .connection import Connection, Role, WebSocketState
from .aio import WebSocket
from .client import ClientConnection, connect
from .server import Server, ServerConnection, serve

__all__ = [
    "DeflateOptions", "DeflateParameters",
    "CloseCode", "Frame", "FrameParser", "Opcode", "apply_mask", "encode_frame",
    "ClientHandshake", "ServerHandshake", "accept_key", "generate_key",
    "Accepted", "BinaryReceived", "CloseReceived", "FrameReceived", "PingReceived",
    "PongReceived", "Rejected", "RequestReceived", "TextReceived", "WebSocketClosed",
    "Connection", "Role", "WebSocketState",
    "WebSocket", "ClientConnection", "connect", "Server", "ServerConnection", "serve",
]
