"""Engine.IO v4: packets and payloads, the two sessions, the request router, asyncio drivers.

The sans-I/O parts own no socket and no clock: :mod:`.packets` is the wire grammar,
:mod:`.server_session` and :mod:`.client_session` are the two ends' state machines (their
outputs are in :mod:`.events`), :mod:`.transport` names the transports, and
:mod:`.server_core` decides how each HTTP request is answered.  The asyncio drivers are
:class:`Server` / :class:`serve` and :class:`AsyncClient`::

    from lablib.engineio import Server, serve, AsyncClient
"""

from .packets import (BINARY_PREFIX, RECORD_SEPARATOR, OpenInfo, Packet, PacketType, decode_packet,
                      decode_payload, encode_packet, encode_payload)
from .events import (AnswerPoll, CloseWebSocket, HoldPoll, MessageReceived, Opened, PausePolling,
                     PongReceived, RefuseRequest, SendPolling, SendWebSocket, SessionClosed,
                     Upgraded, UpgradeAborted)
from .transport import Transport
from .server_session import EngineState, ServerSession
from .client_session import ClientSession, EngineClientState
from .server_core import AcceptWebSocket, EngineServerCore, HTTPReply, RequestResult, generate_sid
from .server import Server, serve
from .client import AsyncClient

__all__ = [
    "BINARY_PREFIX", "RECORD_SEPARATOR", "OpenInfo", "Packet", "PacketType", "decode_packet",
    "decode_payload", "encode_packet", "encode_payload",
    "AnswerPoll", "CloseWebSocket", "HoldPoll", "MessageReceived", "Opened", "PausePolling",
    "PongReceived", "RefuseRequest", "SendPolling", "SendWebSocket", "SessionClosed", "Upgraded",
    "UpgradeAborted",
    "Transport", "EngineState", "ServerSession", "ClientSession", "EngineClientState",
    "AcceptWebSocket", "EngineServerCore", "HTTPReply", "RequestResult", "generate_sid",
    "Server", "serve", "AsyncClient",
]
