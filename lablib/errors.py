"""The error types shared by every layer of lablib.

The hierarchy follows one rule: an error knows what the peer should be told.

* :class:`RemoteProtocolError` blames the peer; :class:`LocalProtocolError` blames the caller
  (an API misuse on our side), like wsproto and h11 do.
* A :class:`WebSocketProtocolError` carries the close code (RFC 6455 §7.4.1) that the
  connection is failed with; Engine.IO and Socket.IO have no close codes, so their
  :class:`PacketError` carries none.
* :class:`PayloadTooBig` carries both answers: close 1009 on a WebSocket, 413 on HTTP.
* A :class:`HandshakeError` carries the HTTP status (and extra headers) of the answer, an
  :class:`EngineIOError` the Engine.IO error JSON.
* :class:`ConnectionClosed` is raised by the asyncio API when a connection is used after it
  closed (the WebSocket *event* that reports a close is :class:`lablib.websocket.events.WebSocketClosed`).
"""

from __future__ import annotations


class LablibError(Exception):
    """Base class of every error lablib raises on purpose."""


# --- protocol violations, every layer ------------------------------------------------------

class ProtocolError(LablibError):
    """A protocol violation; ``reason`` says which rule was broken."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: a bad frame, a packet that does not decode, ..."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids (e.g. send after closing)."""


class PayloadTooBig(RemoteProtocolError):
    """A message or a body exceeds the configured limit.

    Each carrier tells the peer its own way: a WebSocket closes with 1009 (``close_code``,
    RFC 6455 §7.4.1), an HTTP request body gets 413 (``http_status``).
    """

    close_code = 1009
    http_status = 413


class PacketError(RemoteProtocolError):
    """An Engine.IO or Socket.IO packet from the peer that cannot be decoded: empty, an unknown
    type, bad data.  These layers have no close codes: the connection is just closed."""


# --- WebSocket (RFC 6455) -------------------------------------------------------------------

class WebSocketProtocolError(RemoteProtocolError):
    """The peer broke RFC 6455; ``close_code`` is what the connection is failed with (§7.4.1).

    1002 (protocol error) by default; :class:`InvalidUTF8` is 1007.
    """

    close_code: int = 1002

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason)
        if close_code is not None:
            self.close_code = close_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, close_code={self.close_code})"


class InvalidUTF8(WebSocketProtocolError):
    """A text message or close reason is not valid UTF-8 (RFC 6455 §8.1) -> close 1007."""

    close_code = 1007


class HandshakeError(LablibError):
    """The opening handshake failed.

    On the server, ``status`` and ``headers`` are the HTTP error response to send; on the
    client, ``status`` is what the server answered (or 0 if the answer was not HTTP at all).
    """

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers or [])


class ConnectionClosed(LablibError):
    """Raised by the asyncio API when using a connection that is closed.

    ``code`` and ``reason`` are those of the close frame received (1005 if it had no code,
    1006 if the TCP connection dropped without a closing handshake).
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason

    @property
    def ok(self) -> bool:
        """True for a clean close: 1000 (normal) or 1001 (going away)."""
        return self.code in (1000, 1001)


# --- Engine.IO v4 ------------------------------------------------------------------------------

class EngineIOError(LablibError):
    """An Engine.IO request the server refuses, answered with an HTTP status and the error JSON.

    The codes are those of the reference server (engine.io ``Server.errors``)::

        0 "Transport unknown"          400
        1 "Session ID unknown"         400
        2 "Bad handshake method"       400
        3 "Bad request"                400
        4 "Forbidden"                  403
        5 "Unsupported protocol version" 400

    The body is ``{"code": <code>, "message": "<message>"}``.
    """

    MESSAGES = {
        0: "Transport unknown",
        1: "Session ID unknown",
        2: "Bad handshake method",
        3: "Bad request",
        4: "Forbidden",
        5: "Unsupported protocol version",
    }

    def __init__(self, code: int, message: str | None = None, status: int | None = None) -> None:
        self.code = code
        self.message = message if message is not None else self.MESSAGES.get(code, "Bad request")
        self.status = status if status is not None else (403 if code == 4 else 400)
        super().__init__(f"{self.status} {self.message} (code {code})")

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


# --- Socket.IO adapters (several servers, one cluster) ---------------------------------------

class AdapterError(LablibError):
    """A cluster adapter could not reach its broker (Redis): ``url`` names which one.

    Raised at start when nothing answers there, and by a broadcast or a cluster query that
    could not be published while the broker is away (the local clients were served already).
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason} (Redis at {url})")
        self.url = url
        self.reason = reason
