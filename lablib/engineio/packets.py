"""Engine.IO v4 packets and payloads: the wire grammar, both transports.

An Engine.IO *packet* is a type digit followed by optional data (protocol v4, "Protocol" and
"Packet encoding")::

    packet       = packet-type [ data ]             ; text: "4hello", "2probe", "6"
    packet-type  = "0" / "1" / "2" / "3" / "4" / "5" / "6"
                 ; open close ping pong message upgrade noop

A *binary* message carries no type digit at all; the transport says it is binary:

* **WebSocket** - one packet per frame.  Text packets travel in text frames exactly as above;
  a binary message is a binary frame holding the raw bytes (only messages can be binary).
* **HTTP long-polling** - several packets share one body, the *payload*, joined by the ASCII
  record separator (0x1E); a binary message is written ``"b"`` + its base64 text::

      payload      = encoded *( %x1E encoded )        ; "4hello\\x1ebAQIDBA=="
      encoded      = packet / "b" base64-data

So ``4hello`` is a message "hello", ``bAQIDBA==`` the bytes 01 02 03 04, ``2`` a ping, ``3probe``
the answer to an upgrade probe.  The open packet carries the handshake as JSON text
(:class:`OpenInfo`): ``0{"sid":"...","upgrades":["websocket"],"pingInterval":25000,...}``.

Decoding is strict, unlike the reference parser (engine.io-parser's ``decodePacket`` returns an
"error" packet, and both it and python-engineio accept sloppy base64): an empty text packet, an
unknown type character or malformed base64 raise :class:`~lablib.errors.PacketError`; a payload
longer than ``max_payload`` bytes raises :class:`~lablib.errors.PayloadTooBig` (whose
``http_status`` is 413, the status engine.io answers an oversized POST with).  Decoding never
raises anything else, whatever the input.

Text data is kept as text: ``4{"a":1}`` is the message ``'{"a":1}'`` (python-engineio would
hand back a dict - guessing JSON is the layer above's business, not Engine.IO's).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass
from typing import Iterable, Union

from ..errors import LocalProtocolError, PacketError, PayloadTooBig

__all__ = [
    "PacketType", "Packet", "OpenInfo", "RECORD_SEPARATOR", "BINARY_PREFIX",
    "encode_packet", "decode_packet", "encode_payload", "decode_payload",
]

RECORD_SEPARATOR = "\x1e"  #: joins the packets of a polling payload
BINARY_PREFIX = "b"        #: marks a base64-encoded binary message in a polling payload

PacketData = Union[str, bytes, dict, None]


class PacketType(enum.IntEnum):
    """The seven packet types of Engine.IO v4 ("Protocol" section of the spec)."""

    OPEN = 0     #: server -> client, first packet of a session: the handshake JSON
    CLOSE = 1    #: "this transport can be closed"; ends the session
    PING = 2     #: server -> client heartbeat (v4 reversed v3's direction); "2probe" on an upgrade
    PONG = 3     #: client -> server answer to a ping; "3probe" answers the upgrade probe
    MESSAGE = 4  #: application data, text or binary
    UPGRADE = 5  #: client -> server over the new WebSocket: "switch to me now"
    NOOP = 6     #: does nothing; releases a pending long-poll during an upgrade


_TYPE_CHAR = {kind: str(int(kind)) for kind in PacketType}          #: MESSAGE -> "4"
_TYPE_OF_CHAR = {char: kind for kind, char in _TYPE_CHAR.items()}   #: "4" -> MESSAGE


@dataclass(frozen=True, slots=True)
class Packet:
    """One Engine.IO packet.

    ``data`` is ``str`` for text, ``bytes`` for a binary message, a ``dict`` for a JSON body
    (encoded compactly, keys in insertion order - used for the open packet) or ``None``.
    Two normalisations keep ``decode(encode(p)) == p``: a message always has data (``""``
    when empty), other types use ``None`` for "no data".
    """

    type: PacketType
    data: PacketData = None

    def __post_init__(self) -> None:
        if type(self.type) is PacketType and type(self.data) is str and (
                self.data or self.type is PacketType.MESSAGE):
            return  # the common case, a text packet: nothing to check or normalise
        try:
            kind = PacketType(self.type)
        except ValueError:
            raise LocalProtocolError(f"unknown Engine.IO packet type {self.type!r}") from None
        object.__setattr__(self, "type", kind)
        data = self.data
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if isinstance(data, bytes) and kind is not PacketType.MESSAGE:
            raise LocalProtocolError(f"only a message can carry binary data, not {kind.name}")
        if not isinstance(data, (str, bytes, dict, type(None))):
            raise LocalProtocolError(f"packet data must be str, bytes, dict or None, not {type(data).__name__}")
        if kind is PacketType.MESSAGE and data is None:
            data = ""
        elif kind is not PacketType.MESSAGE and data == "":
            data = None
        object.__setattr__(self, "data", data)

    @property
    def binary(self) -> bool:
        """True for a binary message (a WebSocket binary frame, ``b...`` when polling)."""
        return isinstance(self.data, bytes)

    def __repr__(self) -> str:
        if self.data is None:
            return f"Packet({self.type.name})"
        return f"Packet({self.type.name}, {self.data!r})"


def _text_of(packet: Packet) -> str:
    data = packet.data
    if data is None:
        return ""
    if isinstance(data, dict):
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    assert isinstance(data, str)
    return data


def encode_packet(packet: Packet, *, for_polling: bool) -> str | bytes:
    """Serialise one packet.

    WebSocket form (``for_polling=False``): ``str`` for a text frame (``"4hello"``), raw
    ``bytes`` for a binary frame.  Polling form (``for_polling=True``): always ``str``; a
    binary message becomes ``"b"`` + base64 (``b"\\x01\\x02\\x03\\x04"`` -> ``"bAQIDBA=="``).
    """
    if packet.binary:
        assert isinstance(packet.data, bytes)
        if for_polling:
            return BINARY_PREFIX + base64.b64encode(packet.data).decode("ascii")
        return packet.data
    return _TYPE_CHAR[packet.type] + _text_of(packet)


def decode_packet(data: str | bytes) -> Packet:
    """Parse one packet: a WebSocket message, or one piece of a polling payload.

    ``bytes`` (a binary frame) is a binary message, whatever it holds.  Text must start with
    a type digit ``0``-``6`` or with ``b`` (base64 binary); anything else raises PacketError.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return Packet(PacketType.MESSAGE, bytes(data))
    if not isinstance(data, str):
        raise PacketError(f"cannot decode a packet from {type(data).__name__}")
    if not data:
        raise PacketError("empty packet")
    head, rest = data[0], data[1:]
    if head == BINARY_PREFIX:
        return Packet(PacketType.MESSAGE, _b64decode(rest))
    kind = _TYPE_OF_CHAR.get(head)
    if kind is None:
        raise PacketError(f"unknown packet type {head!r}")
    return Packet(kind, rest)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise PacketError("binary packet with malformed base64") from None


def encode_payload(packets: Iterable[Packet]) -> str:
    """Join packets into one polling body: each in polling form, separated by ``\\x1e``."""
    pieces = []
    for packet in packets:
        piece = encode_packet(packet, for_polling=True)
        assert isinstance(piece, str)
        if RECORD_SEPARATOR in piece:
            # v4 assumes the separator never occurs in data; sending it would split the packet.
            raise LocalProtocolError("a polling payload cannot carry the record separator \\x1e")
        pieces.append(piece)
    return RECORD_SEPARATOR.join(pieces)


def decode_payload(text: str, max_payload: int | None = None) -> list[Packet]:
    """Split a polling body into packets.

    ``max_payload`` bounds the body's size in UTF-8 bytes (the handshake's ``maxPayload``);
    a longer body raises PayloadTooBig before anything is parsed.  An empty body, an empty
    piece (``"4a\\x1e\\x1e4b"``) or a bad piece raise PacketError: the whole payload is refused.
    """
    if not isinstance(text, str):
        raise PacketError(f"a payload is text, not {type(text).__name__}")
    if max_payload is not None and len(text.encode("utf-8", "surrogatepass")) > max_payload:
        raise PayloadTooBig(f"payload exceeds maxPayload ({max_payload} bytes)")
    return [decode_packet(piece) for piece in text.split(RECORD_SEPARATOR)]


# --- the handshake ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OpenInfo:
    """The JSON body of the open packet ("Handshake" section of the spec).

    Field names are the wire's; times are milliseconds, ``maxPayload`` is bytes.
    """

    sid: str
    upgrades: tuple[str, ...] = ("websocket",)
    pingInterval: int = 25000
    pingTimeout: int = 20000
    maxPayload: int = 1_000_000

    def to_dict(self) -> dict:
        return {"sid": self.sid, "upgrades": list(self.upgrades), "pingInterval": self.pingInterval,
                "pingTimeout": self.pingTimeout, "maxPayload": self.maxPayload}

    def to_json(self) -> str:
        """Compact JSON with the reference server's key order: sid, upgrades, pingInterval, ..."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def to_packet(self) -> Packet:
        return Packet(PacketType.OPEN, self.to_json())

    @classmethod
    def from_json(cls, text: str) -> "OpenInfo":
        """Parse and check an open packet's data; anything malformed raises PacketError."""
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            raise PacketError("open packet data is not JSON") from None
        if not isinstance(value, dict):
            raise PacketError("open packet data is not a JSON object")
        sid = value.get("sid")
        upgrades = value.get("upgrades", [])
        if not isinstance(sid, str) or not sid:
            raise PacketError("open packet without a sid")
        if not isinstance(upgrades, list) or not all(isinstance(u, str) for u in upgrades):
            raise PacketError("open packet: upgrades must be a list of strings")
        numbers = {}
        for key, default in (("pingInterval", None), ("pingTimeout", None), ("maxPayload", 1_000_000)):
            number = value.get(key, default)
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise PacketError(f"open packet: {key} must be a non-negative integer")
            numbers[key] = number
        return cls(sid, tuple(upgrades), **numbers)
