"""Engine.IO v4: packets and payloads, the server session state machine, the request router.

Everything here is sans-I/O (no sockets, no clock of its own); the asyncio server and client
drive it.  See :mod:`lablib.engineio.packets` for the wire grammar,
:mod:`lablib.engineio.session` for the session's states and transitions,
:mod:`lablib.engineio.server_core` for how each HTTP request is answered, and
:mod:`lablib.engineio.client_session` for the client's side.
"""

from .packets import (BINARY_PREFIX, RECORD_SEPARATOR, OpenInfo, Packet, PacketType, decode_packet,
                      decode_payload, encode_packet, encode_payload)
from .session import (Action, AnswerPoll, CloseWebSocket, Event, HoldPoll, MessageReceived, Output,
                      PongReceived, RefuseRequest, SendWebSocket, ServerSession, SessionClosed, State,
                      Transport, Upgraded, UpgradeAborted)
from .server_core import AcceptWebSocket, EngineServerCore, HTTPReply, RequestResult, generate_sid
from .client_session import ClientSession, ClientState, Opened, PausePolling, SendPolling

__all__ = [
    "BINARY_PREFIX", "RECORD_SEPARATOR", "OpenInfo", "Packet", "PacketType", "decode_packet",
    "decode_payload", "encode_packet", "encode_payload",
    "Action", "AnswerPoll", "CloseWebSocket", "Event", "HoldPoll", "MessageReceived", "Output",
    "PongReceived", "RefuseRequest", "SendWebSocket", "ServerSession", "SessionClosed", "State",
    "Transport", "Upgraded", "UpgradeAborted",
    "AcceptWebSocket", "EngineServerCore", "HTTPReply", "RequestResult", "generate_sid",
    "ClientSession", "ClientState", "Opened", "PausePolling", "SendPolling",
]
