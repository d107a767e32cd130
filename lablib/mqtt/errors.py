"""The errors of the MQTT layer.

They follow lablib's rule (:mod:`lablib.errors`): an error blames the right party.  The peer's
mistakes are also :class:`~lablib.errors.RemoteProtocolError`, ours
:class:`~lablib.errors.LocalProtocolError`; MQTT has no close codes, so none carries one.

* :class:`MalformedPacket` - the *peer's* bytes break the MQTT 3.1.1 grammar.  §4.8: "Unless
  stated otherwise, if either the Server or Client encounters a protocol violation, it MUST
  close the Network Connection on which it received that Control Packet" - MQTT 3.1.1 has no
  error packet, closing is the only answer.
* :class:`PacketTooLarge` - a packet bigger than the receiver's limit (a malformed packet as far as
  the receiver is concerned: the connection is closed before the bytes are buffered).
* :class:`MQTTProtocolError` - a well-formed packet that is not allowed now (e.g. a second CONNACK).
* :class:`InvalidPacket` - *we* were asked to build a packet the spec forbids (QoS 3, a topic with
  a wildcard in a PUBLISH, ...): a local error, nothing was sent.
* :class:`ConnectionRefused` - the server answered CONNECT with a non-zero return code (§3.2.2.3).
"""

from __future__ import annotations

from ..errors import LablibError, LocalProtocolError, RemoteProtocolError

__all__ = ["MQTTError", "MalformedPacket", "PacketTooLarge", "MQTTProtocolError",
           "InvalidPacket", "ConnectionRefused", "SessionError"]


class MQTTError(LablibError):
    """Base class of the MQTT layer's errors; ``reason`` says what was wrong (and where in the spec)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class MalformedPacket(MQTTError, RemoteProtocolError):
    """The peer sent bytes that are not a valid MQTT 3.1.1 Control Packet: close the connection."""


class PacketTooLarge(MalformedPacket):
    """A packet's Remaining Length exceeds the receiver's ``max_packet_size``."""


class MQTTProtocolError(MQTTError, RemoteProtocolError):
    """The peer sent a valid packet that the protocol does not allow at this point (§4.8)."""


class InvalidPacket(MQTTError, LocalProtocolError):
    """A packet we were asked to build is not allowed by the spec (a local error)."""


class SessionError(MQTTError, LocalProtocolError):
    """The session was asked for something it cannot do now (not connected, window full, ...)."""


class ConnectionRefused(MQTTError):
    """CONNACK with a non-zero return code (§3.2.2.3, Table 3.1)."""

    REASONS = {
        1: "unacceptable protocol version",
        2: "identifier rejected",
        3: "server unavailable",
        4: "bad user name or password",
        5: "not authorized",
    }

    def __init__(self, return_code: int) -> None:
        self.return_code = return_code
        super().__init__(f"connection refused: {return_code} "
                         f"({self.REASONS.get(return_code, 'reserved')}) (§3.2.2.3)")
