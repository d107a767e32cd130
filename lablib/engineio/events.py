"""What an Engine.IO session reports: events for the application, actions for the driver.

Both sessions, :class:`~lablib.engineio.server_session.ServerSession` and
:class:`~lablib.engineio.client_session.ClientSession`, return a list of these, in order.  The
events are the same on both ends (a message arrived, the upgrade finished, the session closed);
the actions name the transport they act on:

* long-polling, server: :class:`HoldPoll` keeps the GET just received open, :class:`AnswerPoll`
  answers the held GET, :class:`RefuseRequest` answers a request with an error;
* long-polling, client: :class:`SendPolling` POSTs packets, :class:`PausePolling` stops polling
  for the upgrade;
* WebSocket, both ends: :class:`SendWebSocket` sends packets (one message each),
  :class:`CloseWebSocket` closes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EngineIOError
from ..events import Action, Event
from .packets import OpenInfo, Packet

__all__ = [
    "MessageReceived", "PongReceived", "Opened", "Upgraded", "UpgradeAborted", "SessionClosed",
    "HoldPoll", "AnswerPoll", "RefuseRequest", "SendPolling", "PausePolling",
    "SendWebSocket", "CloseWebSocket",
]


# --- events ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    data: str | bytes  #: text (str) or binary (bytes) message from the peer


@dataclass(frozen=True, slots=True)
class PongReceived(Event):
    """Server: the client's pong arrived, the heartbeat is alive: the next ping goes out ``pingInterval`` from now."""


@dataclass(frozen=True, slots=True)
class Opened(Event):
    """Client: the server's open packet arrived; the session is OPEN."""

    info: OpenInfo  #: the server's handshake: sid, upgrades, pingInterval, pingTimeout, maxPayload


@dataclass(frozen=True, slots=True)
class Upgraded(Event):
    """The session now runs on the WebSocket; polling is refused from here on."""


@dataclass(frozen=True, slots=True)
class UpgradeAborted(Event):
    reason: str  #: why the WebSocket was dropped; the session goes on over polling


@dataclass(frozen=True, slots=True)
class SessionClosed(Event):
    reason: str  #: "ping timeout", "transport close", "transport error", "parse error", "forced close"


# --- actions: long-polling, server -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HoldPoll(Action):
    """Keep the GET just received open: it becomes the held poll, answered by an AnswerPoll."""


@dataclass(frozen=True, slots=True)
class AnswerPoll(Action):
    packets: tuple[Packet, ...]  #: answer the held poll: 200, ``encode_payload(packets)``


@dataclass(frozen=True, slots=True)
class RefuseRequest(Action):
    """Answer the request just received with ``status`` (and the error JSON if ``error``)."""

    status: int
    error: EngineIOError | None = None


# --- actions: long-polling, client -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SendPolling(Action):
    packets: tuple[Packet, ...]  #: POST ``encode_payload(packets)`` (text/plain; charset=UTF-8)


@dataclass(frozen=True, slots=True)
class PausePolling(Action):
    """Send no new GET/POST; call :meth:`~lablib.engineio.client_session.ClientSession.polling_paused` once none is in flight."""


# --- actions: WebSocket, both ends -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SendWebSocket(Action):
    packets: tuple[Packet, ...]  #: one WebSocket message each (``encode_packet(p, for_polling=False)``)


@dataclass(frozen=True, slots=True)
class CloseWebSocket(Action):
    """Close the session's WebSocket (a normal 1000 close)."""
