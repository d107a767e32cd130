"""MQTT 3.1.1 Control Packets: a sans-I/O codec (OASIS Standard, 29 October 2014).

Every Control Packet is (§2.1)::

    fixed header   byte 1: packet type (bits 7-4) | flags (bits 3-0)            §2.2.1, §2.2.2
                   Remaining Length: 1-4 bytes, 7 bits each, bit 7 = "more"     §2.2.3
    variable header (some types): e.g. a Packet Identifier, 2 bytes big-endian  §2.3
    payload         (some types): e.g. CONNECT's client id, SUBSCRIBE's filters §2.4

Strings are "UTF-8 encoded strings" (§1.5.3): a 2-byte big-endian length, then that many bytes of
well-formed UTF-8 without U+0000.  Binary fields (the will message, the password) have the same
2-byte length prefix.  A PUBLISH payload is the rest of the packet, with no length of its own.

:func:`encode` turns a packet (a frozen dataclass below) into bytes; :class:`PacketParser` turns
bytes, fed in any chunks, into packets, strictly: a reserved flag bit set, a length that does not
add up, a string that is not UTF-8, a Packet Identifier 0 where one is required all raise
:class:`~lablib.mqtt.errors.MalformedPacket` with the reason and the section.  Building a packet
the spec forbids raises :class:`~lablib.mqtt.errors.InvalidPacket` (our mistake, not the peer's).

    >>> encode(Publish("a/b", b"hi", qos=1, packet_id=10))
    b'2\\t\\x00\\x03a/b\\x00\\nhi'
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Union

# NEED_DATA: what PacketParser.next_packet returns while a packet is incomplete (every
# lablib parser's sentinel, h11's style)
from .._util import NEED_DATA, NeedData
from .errors import InvalidPacket, MalformedPacket, PacketTooLarge

__all__ = [
    "PacketType", "NEED_DATA", "MAX_REMAINING_LENGTH",
    "Connect", "Connack", "Publish", "Puback", "Pubrec", "Pubrel", "Pubcomp",
    "Subscribe", "Suback", "Unsubscribe", "Unsuback", "Pingreq", "Pingresp", "Disconnect",
    "Packet", "encode", "decode", "check_first_byte", "encode_remaining_length", "decode_remaining_length",
    "PacketParser", "validate_topic_name", "validate_topic_filter",
]

#: §2.2.3: four bytes of 7 bits: 0xFF 0xFF 0xFF 0x7F = 268,435,455 (256 MB).
MAX_REMAINING_LENGTH = 268_435_455

#: The receiver's default limit on one packet's Remaining Length (secure default; raise it if needed).
DEFAULT_MAX_PACKET_SIZE = 1 << 20




class PacketType(enum.IntEnum):
    """§2.2.1 Table 2.1: the Control Packet types (0 and 15 are reserved)."""

    CONNECT = 1      #: client -> server: connection request
    CONNACK = 2      #: server -> client: connect acknowledgment
    PUBLISH = 3      #: both ways: publish message
    PUBACK = 4       #: QoS 1 acknowledgment
    PUBREC = 5       #: QoS 2, part 1: publish received
    PUBREL = 6       #: QoS 2, part 2: publish release
    PUBCOMP = 7      #: QoS 2, part 3: publish complete
    SUBSCRIBE = 8    #: client -> server
    SUBACK = 9       #: server -> client
    UNSUBSCRIBE = 10  #: client -> server
    UNSUBACK = 11    #: server -> client
    PINGREQ = 12     #: client -> server
    PINGRESP = 13    #: server -> client
    DISCONNECT = 14  #: client -> server


# --- validation helpers ---------------------------------------------------------------------------

def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise InvalidPacket(reason)


def _check_qos(qos: int, what: str = "QoS") -> None:
    _require(qos in (0, 1, 2), f"{what} must be 0, 1 or 2, not {qos!r} (§4.3)")


def _check_packet_id(packet_id: int | None) -> None:
    _require(isinstance(packet_id, int) and 1 <= packet_id <= 0xFFFF,
             f"Packet Identifier must be 1-65535, not {packet_id!r} (§2.3.1 [MQTT-2.3.1-1])")


def _check_string(value: str, what: str) -> None:
    _require(isinstance(value, str), f"{what} must be a str")
    _require("\x00" not in value, f"{what} must not contain U+0000 (§1.5.3 [MQTT-1.5.3-2])")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidPacket(f"{what} contains a surrogate: not UTF-8 (§1.5.3 [MQTT-1.5.3-1])") from None
    _require(size <= 0xFFFF, f"{what} is {size} bytes: a string holds at most 65535 (§1.5.3)")


def _check_binary(value: bytes, what: str) -> None:
    _require(isinstance(value, (bytes, bytearray)), f"{what} must be bytes")
    _require(len(value) <= 0xFFFF, f"{what} is {len(value)} bytes: at most 65535 (§1.5.3)")


def validate_topic_name(topic: str) -> None:
    """§4.7: a Topic Name (in PUBLISH) has at least one character and no wildcard."""
    _check_string(topic, "Topic Name")
    _require(len(topic) > 0, "Topic Name must be at least one character (§4.7.3 [MQTT-4.7.3-1])")
    _require("+" not in topic and "#" not in topic,
             f"Topic Name {topic!r} must not contain wildcards (§3.3.2.1 [MQTT-3.3.2-2])")


def validate_topic_filter(topic_filter: str) -> None:
    """§4.7.1: ``#`` only as the whole last level, ``+`` only as a whole level."""
    _check_string(topic_filter, "Topic Filter")
    _require(len(topic_filter) > 0, "Topic Filter must be at least one character (§4.7.3 [MQTT-4.7.3-1])")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level:
            _require(level == "#" and i == len(levels) - 1,
                     f"'#' must be a whole level and the last one in {topic_filter!r} "
                     "(§4.7.1.2 [MQTT-4.7.1-2])")
        if "+" in level:
            _require(level == "+", f"'+' must occupy a whole level in {topic_filter!r} "
                                   "(§4.7.1.3 [MQTT-4.7.1-3])")


# --- the packets ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT (§3.1), the first packet a client sends.

    ``client_id`` may be "" (the server assigns one, only with ``clean_session`` True, §3.1.3.1);
    ``keep_alive`` in seconds, 0 = off (§3.1.2.10); the will (§3.1.2.5-§3.1.2.7) is sent by the
    server if the connection drops without DISCONNECT; ``password`` needs a ``username``
    (§3.1.2.9 [MQTT-3.1.2-22]).  ``protocol_level`` is 4 for 3.1.1 (§3.1.2.2).
    """

    type: ClassVar[PacketType] = PacketType.CONNECT
    client_id: str
    clean_session: bool = True
    keep_alive: int = 60
    will_topic: str | None = None
    will_message: bytes = b""
    will_qos: int = 0
    will_retain: bool = False
    username: str | None = None
    password: bytes | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = 4

    def __post_init__(self) -> None:
        _check_string(self.client_id, "Client Identifier")
        _require(0 <= self.keep_alive <= 0xFFFF, "Keep Alive is a 16-bit number of seconds (§3.1.2.10)")
        _require(0 <= self.protocol_level <= 0xFF, "Protocol Level is one byte (§3.1.2.2)")
        _require(self.protocol_name == "MQTT",
                 f"Protocol Name must be 'MQTT', not {self.protocol_name!r} (§3.1.2.1 [MQTT-3.1.2-1])")
        _check_qos(self.will_qos, "Will QoS")
        if self.will_topic is None:
            _require(self.will_qos == 0 and not self.will_retain and not self.will_message,
                     "no will: Will QoS, Will Retain and Will Message must be unset "
                     "(§3.1.2.6, §3.1.2.7 [MQTT-3.1.2-13], [MQTT-3.1.2-15])")
        else:
            validate_topic_name(self.will_topic)
            _check_binary(self.will_message, "Will Message")
        if self.username is not None:
            _check_string(self.username, "User Name")
        if self.password is not None:
            _require(self.username is not None,
                     "a Password needs a User Name (§3.1.2.9 [MQTT-3.1.2-22])")
            _check_binary(self.password, "Password")

    @property
    def connect_flags(self) -> int:
        """§3.1.2.3 Figure 3.4: bit 7 user name, 6 password, 5 will retain, 4-3 will QoS,
        2 will flag, 1 clean session, 0 reserved (0)."""
        return ((self.username is not None) << 7 | (self.password is not None) << 6
                | self.will_retain << 5 | self.will_qos << 3 | (self.will_topic is not None) << 2
                | self.clean_session << 1)

    def _encode(self) -> tuple[int, bytes]:
        parts = [_string(self.protocol_name), bytes([self.protocol_level, self.connect_flags]),
                 struct.pack("!H", self.keep_alive), _string(self.client_id)]
        if self.will_topic is not None:
            parts += [_string(self.will_topic), _binary(self.will_message)]
        if self.username is not None:
            parts.append(_string(self.username))
        if self.password is not None:
            parts.append(_binary(self.password))
        return 0, b"".join(parts)


@dataclass(frozen=True, slots=True)
class Connack:
    """CONNACK (§3.2): ``return_code`` 0 accepted, 1-5 refused (Table 3.1)."""

    type: ClassVar[PacketType] = PacketType.CONNACK
    session_present: bool = False
    return_code: int = 0

    def __post_init__(self) -> None:
        _require(0 <= self.return_code <= 5,
                 f"CONNACK return code {self.return_code} is reserved (§3.2.2.3 Table 3.1)")
        _require(not (self.session_present and self.return_code),
                 "a refused CONNACK must have Session Present 0 (§3.2.2.2 [MQTT-3.2.2-4])")

    def _encode(self) -> tuple[int, bytes]:
        return 0, bytes([int(self.session_present), self.return_code])


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH (§3.3): ``packet_id`` only with QoS 1 or 2 (§3.3.2.2); ``dup`` marks a re-delivery
    and must be False at QoS 0 (§3.3.1.1 [MQTT-3.3.1-2]); ``retain`` asks the server to keep it."""

    type: ClassVar[PacketType] = PacketType.PUBLISH
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None

    def __post_init__(self) -> None:
        validate_topic_name(self.topic)
        _require(isinstance(self.payload, (bytes, bytearray)), "PUBLISH payload must be bytes")
        _check_qos(self.qos)
        if self.qos == 0:
            _require(self.packet_id is None, "a QoS 0 PUBLISH has no Packet Identifier "
                                             "(§2.3.1 [MQTT-2.3.1-5])")
            _require(not self.dup, "DUP must be 0 for a QoS 0 PUBLISH (§3.3.1.1 [MQTT-3.3.1-2])")
        else:
            _check_packet_id(self.packet_id)

    def _encode(self) -> tuple[int, bytes]:
        flags = self.dup << 3 | self.qos << 1 | self.retain    # §3.3.1 Figure 3.10
        packet_id = struct.pack("!H", self.packet_id) if self.qos else b""
        return flags, _string(self.topic) + packet_id + bytes(self.payload)


@dataclass(frozen=True, slots=True)
class _Ack:
    """The four packets whose variable header is only a Packet Identifier (§3.4-§3.7, §3.11)."""

    packet_id: int

    type: ClassVar[PacketType]
    flags: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id)

    def _encode(self) -> tuple[int, bytes]:
        return self.flags, struct.pack("!H", self.packet_id)


@dataclass(frozen=True, slots=True)
class Puback(_Ack):
    """PUBACK (§3.4): the answer to a QoS 1 PUBLISH."""

    type: ClassVar[PacketType] = PacketType.PUBACK


@dataclass(frozen=True, slots=True)
class Pubrec(_Ack):
    """PUBREC (§3.5): first answer to a QoS 2 PUBLISH ("received")."""

    type: ClassVar[PacketType] = PacketType.PUBREC


@dataclass(frozen=True, slots=True)
class Pubrel(_Ack):
    """PUBREL (§3.6): the answer to PUBREC ("release"); fixed-header flags 0010 ([MQTT-3.6.1-1])."""

    type: ClassVar[PacketType] = PacketType.PUBREL
    flags: ClassVar[int] = 0b0010


@dataclass(frozen=True, slots=True)
class Pubcomp(_Ack):
    """PUBCOMP (§3.7): the answer to PUBREL; the QoS 2 exchange is complete."""

    type: ClassVar[PacketType] = PacketType.PUBCOMP


@dataclass(frozen=True, slots=True)
class Unsuback(_Ack):
    """UNSUBACK (§3.11): the answer to UNSUBSCRIBE."""

    type: ClassVar[PacketType] = PacketType.UNSUBACK


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE (§3.8): ``topics`` is a tuple of (Topic Filter, requested QoS), at least one
    ([MQTT-3.8.3-3]); fixed-header flags 0010 ([MQTT-3.8.1-1])."""

    type: ClassVar[PacketType] = PacketType.SUBSCRIBE
    packet_id: int
    topics: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id)
        _require(len(self.topics) > 0, "SUBSCRIBE needs at least one Topic Filter (§3.8.3 [MQTT-3.8.3-3])")
        for topic_filter, qos in self.topics:
            validate_topic_filter(topic_filter)
            _check_qos(qos, "Requested QoS")

    def _encode(self) -> tuple[int, bytes]:
        body = b"".join(_string(f) + bytes([q]) for f, q in self.topics)
        return 0b0010, struct.pack("!H", self.packet_id) + body


#: §3.9.3: the SUBACK return codes: granted QoS 0, 1, 2, or 0x80 failure.
SUBACK_FAILURE = 0x80


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK (§3.9): one return code per requested filter, in order: 0/1/2 granted, 0x80 failure."""

    type: ClassVar[PacketType] = PacketType.SUBACK
    packet_id: int
    return_codes: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id)
        _require(len(self.return_codes) > 0, "SUBACK has one return code per filter (§3.9.3)")
        for code in self.return_codes:
            _require(code in (0, 1, 2, SUBACK_FAILURE),
                     f"SUBACK return code {code:#04x} is reserved (§3.9.3 [MQTT-3.9.3-2])"
                     if isinstance(code, int) else "SUBACK return codes are ints")

    def _encode(self) -> tuple[int, bytes]:
        return 0, struct.pack("!H", self.packet_id) + bytes(self.return_codes)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE (§3.10): at least one Topic Filter ([MQTT-3.10.3-2]); flags 0010 ([MQTT-3.10.1-1])."""

    type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE
    packet_id: int
    topics: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id)
        _require(len(self.topics) > 0,
                 "UNSUBSCRIBE needs at least one Topic Filter (§3.10.3 [MQTT-3.10.3-2])")
        for topic_filter in self.topics:
            validate_topic_filter(topic_filter)

    def _encode(self) -> tuple[int, bytes]:
        return 0b0010, struct.pack("!H", self.packet_id) + b"".join(_string(f) for f in self.topics)


@dataclass(frozen=True, slots=True)
class _Empty:
    """The packets that are a fixed header only: ``0xC0 0x00`` etc. (§3.12-§3.14)."""

    type: ClassVar[PacketType]

    def _encode(self) -> tuple[int, bytes]:
        return 0, b""


@dataclass(frozen=True, slots=True)
class Pingreq(_Empty):
    """PINGREQ (§3.12): "I am alive" / "are you?" (keep alive, §3.1.2.10)."""

    type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(frozen=True, slots=True)
class Pingresp(_Empty):
    """PINGRESP (§3.13): the server's answer to PINGREQ."""

    type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(frozen=True, slots=True)
class Disconnect(_Empty):
    """DISCONNECT (§3.14): the client's clean goodbye; the server discards the will."""

    type: ClassVar[PacketType] = PacketType.DISCONNECT


Packet = Union[Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Suback,
               Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect]

_CLASSES: dict[PacketType, type] = {cls.type: cls for cls in (
    Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Suback,
    Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect)}


# --- encoding -------------------------------------------------------------------------------------

def _string(value: str) -> bytes:
    data = value.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _binary(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + bytes(value)


def encode_remaining_length(length: int) -> bytes:
    """§2.2.3: 7 bits per byte, least significant first, bit 7 set when more bytes follow."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise InvalidPacket(f"Remaining Length {length} is out of range 0-{MAX_REMAINING_LENGTH} (§2.2.3)")
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def encode(packet: Packet) -> bytes:
    """The bytes of ``packet``: fixed header (§2.2), then its variable header and payload."""
    flags, body = packet._encode()
    return bytes([packet.type << 4 | flags]) + encode_remaining_length(len(body)) + body


# --- decoding -------------------------------------------------------------------------------------

def decode_remaining_length(data: bytes, start: int = 1) -> tuple[int, int] | NeedData:
    """Read §2.2.3's Remaining Length at ``data[start:]`` -> (length, bytes used), or NEED_DATA.

    Strict: at most 4 bytes, and the minimum number of bytes (a trailing 0x00 continuation such as
    ``80 00`` encodes 0 in two bytes; §2.2.3's table gives one encoding per range, and MQTT 5
    §1.5.5 states the rule outright).
    """
    value = 0
    for i in range(4):
        if start + i >= len(data):
            return NEED_DATA
        byte = data[start + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i > 0 and byte == 0:
                raise MalformedPacket("Remaining Length is not minimally encoded: a last byte 0x00 "
                                      "(§2.2.3)")
            return value, i + 1
    raise MalformedPacket("Remaining Length longer than 4 bytes (§2.2.3)")


#: §2.2.2 Table 2.2: the fixed-header flags every type except PUBLISH must carry.
_FIXED_FLAGS = {t: 0 for t in PacketType} | {
    PacketType.PUBREL: 0b0010, PacketType.SUBSCRIBE: 0b0010, PacketType.UNSUBSCRIBE: 0b0010}


class _Reader:
    """Reads the variable header and payload of one packet; any overrun is a malformed packet."""

    def __init__(self, body: bytes, name: str) -> None:
        self.body = body
        self.pos = 0
        self.name = name

    @property
    def left(self) -> int:
        return len(self.body) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise MalformedPacket(f"{self.name}: {what} needs {n} bytes, the packet has {self.left} "
                                  "left (Remaining Length too short, §2.2.3)")
        chunk = self.body[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint8(self, what: str) -> int:
        return self.take(1, what)[0]

    def uint16(self, what: str) -> int:
        return struct.unpack("!H", self.take(2, what))[0]

    def packet_id(self) -> int:
        value = self.uint16("Packet Identifier")
        if value == 0:
            raise MalformedPacket(f"{self.name}: Packet Identifier 0 (§2.3.1 [MQTT-2.3.1-1])")
        return value

    def binary(self, what: str) -> bytes:
        return self.take(self.uint16(f"{what} length"), what)

    def string(self, what: str) -> str:
        data = self.binary(what)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPacket(f"{self.name}: {what} is not well-formed UTF-8 ({exc.reason} at "
                                  f"byte {exc.start}) (§1.5.3 [MQTT-1.5.3-1])") from None
        if "\x00" in text:
            raise MalformedPacket(f"{self.name}: {what} contains U+0000 (§1.5.3 [MQTT-1.5.3-2])")
        return text

    def end(self) -> None:
        if self.left:
            raise MalformedPacket(f"{self.name}: {self.left} bytes beyond the packet's fields "
                                  "(Remaining Length too long)")


def check_first_byte(first_byte: int) -> tuple[PacketType, int]:
    """§2.2.1-§2.2.2: the type (not reserved 0 or 15) and flags (fixed for all but PUBLISH)."""
    type_value, flags = first_byte >> 4, first_byte & 0x0F
    if type_value in (0, 15):
        raise MalformedPacket(f"packet type {type_value} is reserved (§2.2.1 Table 2.1)")
    ptype = PacketType(type_value)
    if ptype is not PacketType.PUBLISH and flags != _FIXED_FLAGS[ptype]:
        raise MalformedPacket(f"{ptype.name}: fixed-header flags {flags:04b}, must be "
                              f"{_FIXED_FLAGS[ptype]:04b} (§2.2.2 [MQTT-2.2.2-2])")
    if ptype is PacketType.PUBLISH and flags & 0b0110 == 0b0110:
        raise MalformedPacket("PUBLISH: QoS bits 11 (§3.3.1.2 [MQTT-3.3.1-4])")
    return ptype, flags


def decode(first_byte: int, body: bytes) -> Packet:
    """One packet from its fixed header's first byte and its ``body`` (Remaining Length bytes)."""
    ptype, flags = check_first_byte(first_byte)
    reader = _Reader(body, ptype.name)
    try:
        packet = _DECODERS[ptype](reader, flags)
    except InvalidPacket as exc:  # the dataclass's own checks: here the peer is to blame
        raise MalformedPacket(f"{ptype.name}: {exc.reason}") from None
    reader.end()
    return packet


def _decode_connect(r: _Reader, flags: int) -> Connect:
    name = r.string("Protocol Name")
    if name != "MQTT":
        raise MalformedPacket(f"CONNECT: Protocol Name {name!r}, not 'MQTT' (§3.1.2.1 [MQTT-3.1.2-1])")
    level = r.uint8("Protocol Level")
    connect_flags = r.uint8("Connect Flags")
    if connect_flags & 0x01:
        raise MalformedPacket("CONNECT: reserved Connect Flags bit 0 is 1 (§3.1.2.3 [MQTT-3.1.2-3])")
    keep_alive = r.uint16("Keep Alive")
    client_id = r.string("Client Identifier")
    will = bool(connect_flags & 0x04)
    will_qos, will_retain = (connect_flags >> 3) & 0x03, bool(connect_flags & 0x20)
    if will_qos == 3:
        raise MalformedPacket("CONNECT: Will QoS 3 (§3.1.2.6 [MQTT-3.1.2-14])")
    will_topic, will_message = None, b""
    if will:
        will_topic = r.string("Will Topic")
        will_message = r.binary("Will Message")
    has_username, has_password = bool(connect_flags & 0x80), bool(connect_flags & 0x40)
    username = r.string("User Name") if has_username else None
    password = r.binary("Password") if has_password else None
    return Connect(client_id, bool(connect_flags & 0x02), keep_alive, will_topic, will_message,
                   will_qos, will_retain, username, password, name, level)


def _decode_connack(r: _Reader, flags: int) -> Connack:
    ack_flags = r.uint8("Connect Acknowledge Flags")
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK: reserved acknowledge flag bits 7-1 are not 0 (§3.2.2.1)")
    return Connack(bool(ack_flags & 1), r.uint8("Connect Return code"))


def _decode_publish(r: _Reader, flags: int) -> Publish:
    dup, qos, retain = bool(flags & 0b1000), (flags >> 1) & 0b11, bool(flags & 0b0001)
    if qos == 3:
        raise MalformedPacket("PUBLISH: QoS bits 11 (§3.3.1.2 [MQTT-3.3.1-4])")
    topic = r.string("Topic Name")
    packet_id = r.packet_id() if qos else None
    return Publish(topic, r.take(r.left, "payload"), qos, retain, dup, packet_id)


def _decode_ack(cls: type) -> callable:
    def decode_ack(r: _Reader, flags: int):
        return cls(r.packet_id())
    return decode_ack


def _decode_subscribe(r: _Reader, flags: int) -> Subscribe:
    packet_id = r.packet_id()
    topics = []
    while r.left:
        topic_filter = r.string("Topic Filter")
        qos = r.uint8("Requested QoS")
        if qos & 0xFC:
            raise MalformedPacket("SUBSCRIBE: reserved bits 7-2 of Requested QoS are not 0 "
                                  "(§3.8.3.1 [MQTT-3.8.3-4])")
        topics.append((topic_filter, qos))
    return Subscribe(packet_id, tuple(topics))


def _decode_suback(r: _Reader, flags: int) -> Suback:
    packet_id = r.packet_id()
    return Suback(packet_id, tuple(r.take(r.left, "return codes")))


def _decode_unsubscribe(r: _Reader, flags: int) -> Unsubscribe:
    packet_id = r.packet_id()
    topics = []
    while r.left:
        topics.append(r.string("Topic Filter"))
    return Unsubscribe(packet_id, tuple(topics))


def _decode_empty(cls: type) -> callable:
    def decode_empty(r: _Reader, flags: int):
        return cls()
    return decode_empty


_DECODERS = {
    PacketType.CONNECT: _decode_connect,
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBLISH: _decode_publish,
    PacketType.PUBACK: _decode_ack(Puback),
    PacketType.PUBREC: _decode_ack(Pubrec),
    PacketType.PUBREL: _decode_ack(Pubrel),
    PacketType.PUBCOMP: _decode_ack(Pubcomp),
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _decode_ack(Unsuback),
    PacketType.PINGREQ: _decode_empty(Pingreq),
    PacketType.PINGRESP: _decode_empty(Pingresp),
    PacketType.DISCONNECT: _decode_empty(Disconnect),
}


class PacketParser:
    """Incremental parser: ``feed(bytes)``, then ``next_packet()`` until it returns NEED_DATA.

    MQTT packets are not aligned with WebSocket messages (§6 [MQTT-6.0.0-2]: a receiver must not
    assume so), so the parser keeps what it has not used.  A packet whose Remaining Length exceeds
    ``max_packet_size`` raises :class:`PacketTooLarge` as soon as its header is read: the body
    is never buffered.  After an error the parser stays failed (the connection must close, §4.8).
    ``offset`` counts the bytes consumed, so a dissector knows where each packet was.
    """

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        self.offset = 0
        self._error: Exception | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._buffer += data

    def next_packet(self) -> Packet | NeedData:
        """The next complete packet, or NEED_DATA."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except MalformedPacket as exc:
            self._error = exc
            raise

    def __iter__(self):
        while (packet := self.next_packet()) is not NEED_DATA:
            yield packet

    def receive_data(self, data: bytes) -> list[Packet]:
        """``feed(data)`` and return every packet now complete."""
        self.feed(data)
        return list(self)

    def _next(self) -> Packet | NeedData:
        buffer = self._buffer
        if not buffer:
            return NEED_DATA
        check_first_byte(buffer[0])   # refuse a bad type before waiting for its body
        header = decode_remaining_length(buffer, 1)
        if header is NEED_DATA:
            return NEED_DATA
        length, used = header
        if length > self.max_packet_size:
            raise PacketTooLarge(f"packet of {length} bytes exceeds max_packet_size "
                                 f"{self.max_packet_size}")
        total = 1 + used + length
        if len(buffer) < total:
            return NEED_DATA
        first, body = buffer[0], bytes(buffer[1 + used:total])
        del buffer[:total]
        self.offset += total
        return decode(first, body)
