"""What the client session reports: small frozen dataclasses, one per thing that happened."""

from __future__ import annotations

from dataclasses import dataclass

from ..events import Event
from .packets import Publish

__all__ = ["Event", "Connected", "MessageReceived", "PublishAcknowledged", "SubscribeAcknowledged",
           "UnsubscribeAcknowledged", "PongReceived"]


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """CONNACK accepted the connection (§3.2).

    ``session_present``: the server kept our session (§3.2.2.2).  ``resent``: Packet Identifiers of
    the PUBLISH (DUP=1) and PUBREL packets re-sent because of it (§4.4).  ``discarded``: those we
    had in flight but dropped because the server has no session for us (§3.2.2.2: a client
    with session state that receives Session Present 0 must discard it) - lost messages.
    """

    session_present: bool
    resent: tuple[int, ...] = ()
    discarded: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """An application message from the server (a PUBLISH, delivered once per §4.3's rules)."""

    publish: Publish

    @property
    def topic(self) -> str:
        return self.publish.topic

    @property
    def payload(self) -> bytes:
        return self.publish.payload

    @property
    def qos(self) -> int:
        return self.publish.qos

    @property
    def retain(self) -> bool:
        return self.publish.retain

    @property
    def dup(self) -> bool:
        return self.publish.dup


@dataclass(frozen=True, slots=True)
class PublishAcknowledged(Event):
    """Our QoS 1 PUBLISH got its PUBACK (§4.3.2), or our QoS 2 PUBLISH its PUBCOMP (§4.3.3)."""

    packet_id: int
    qos: int


@dataclass(frozen=True, slots=True)
class SubscribeAcknowledged(Event):
    """SUBACK: ``return_codes`` has the granted QoS (0-2) or 0x80 per filter, in order (§3.9.3)."""

    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UnsubscribeAcknowledged(Event):
    """UNSUBACK (§3.11)."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PongReceived(Event):
    """PINGRESP: the server is alive (§3.13)."""
