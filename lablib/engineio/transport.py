"""The two Engine.IO transports, and what both ends do with a long-polling body.

A session starts on one transport (the spec's "Transports" section): HTTP long-polling, or a
WebSocket from the start; a polling session may then upgrade to a WebSocket ("Upgrade").
"""

from __future__ import annotations

import enum

from ..errors import PacketError
from ..events import Output
from .packets import decode_payload

__all__ = ["Transport", "PollingReceiver"]


class Transport(enum.Enum):
    POLLING = "polling"
    WEBSOCKET = "websocket"


class PollingReceiver:
    """What both ends of a session do with a long-polling body: split it into packets and
    take them in order.  A body that does not parse ends the session ("parse error").

    The server reads it from a POST, the client from a GET's answer; the body was already
    checked against maxPayload and decoded as UTF-8.  Subclasses provide ``fail(reason)`` and
    ``receive_packets(packets, now)``.
    """

    def receive_payload(self, text: str, now: float) -> list[Output]:
        try:
            packets = decode_payload(text)
        except PacketError:
            return self.fail("parse error")  # type: ignore[attr-defined]
        return self.receive_packets(packets, now)  # type: ignore[attr-defined]
