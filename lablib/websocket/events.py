"""What a WebSocket connection reports: the events :meth:`Connection.receive_data` returns.

In the manner of wsproto's ``events.py``: one frozen dataclass per thing that can happen, named
for what the peer did (``TextReceived``, ``PingReceived``, ``CloseReceived``) or for the state
reached (``Accepted``, ``Rejected``, ``WebSocketClosed``).  The WebSocket layer has no actions:
what must be sent waits in :meth:`~lablib.websocket.connection.Connection.data_to_send`.

Not to be confused with :class:`lablib.errors.ConnectionClosed`, the *exception* the asyncio API
raises when a closed connection is used; :class:`WebSocketClosed` is the *event* that reports
the close.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import HandshakeError
from ..events import Event
from ..http import Request, Response
from .frames import CloseCode, Frame

__all__ = [
    "Event", "RequestReceived", "Accepted", "Rejected", "FrameReceived", "TextReceived",
    "BinaryReceived", "PingReceived", "PongReceived", "CloseReceived", "WebSocketClosed",
]


@dataclass(frozen=True, slots=True)
class RequestReceived(Event):
    """Server: a valid handshake request arrived; answer with accept() or reject()."""

    request: Request  #: method, target, headers of the client's GET
    subprotocol: str | None  #: the subprotocol the server would select (None: none)


@dataclass(frozen=True, slots=True)
class Accepted(Event):
    """Client: the server answered 101 and everything checked out; the connection is OPEN."""

    response: Response
    subprotocol: str | None


@dataclass(frozen=True, slots=True)
class Rejected(Event):
    """The opening handshake failed; the connection is CLOSED.

    On a server, the HTTP error answer is queued in data_to_send(); on a client, ``error.status``
    is the status the server answered (0 if its answer was not a valid HTTP response).
    """

    error: HandshakeError


@dataclass(frozen=True, slots=True)
class FrameReceived(Event):
    """One raw frame, emitted before its meaning when ``trace_frames=True`` (for teaching)."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class TextReceived(Event):
    """A complete text message (all its fragments joined, UTF-8 checked)."""

    data: str


@dataclass(frozen=True, slots=True)
class BinaryReceived(Event):
    """A complete binary message (all its fragments joined)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PingReceived(Event):
    """A ping arrived; the matching pong is already queued in data_to_send() (§5.5.2)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class PongReceived(Event):
    """A pong arrived (an answer to our ping, or an unsolicited heartbeat, §5.5.3)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived(Event):
    """The peer's close frame: ``code`` is 1005 when the frame carried none (§7.1.5)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class WebSocketClosed(Event):
    """The connection is over: the closing handshake completed, or it failed.

    ``code``/``reason`` are the peer's close frame for a clean close; for a failure they are
    what *we* sent (e.g. 1002) and ``error`` says why; 1006 means the TCP connection ended
    without any close frame.
    """

    code: int
    reason: str = ""
    error: Exception | None = field(default=None, compare=False)

    @property
    def clean(self) -> bool:
        return self.error is None and self.code != CloseCode.ABNORMAL_CLOSURE
