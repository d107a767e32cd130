"""Socket.IO v5 packets: the wire grammar, binary attachments, the decoder.

Every Socket.IO packet travels as one Engine.IO *message*.  Its text is (Socket.IO protocol v5,
"Packet encoding")::

    packet       = type [ attachments "-" ] [ namespace "," ] [ ack-id ] [ json-data ]
    type         = "0" / "1" / "2" / "3" / "4" / "5" / "6"
                 ; CONNECT DISCONNECT EVENT ACK CONNECT_ERROR BINARY_EVENT BINARY_ACK
    attachments  = 1*DIGIT        ; only for BINARY_EVENT and BINARY_ACK
    namespace    = "/" *char      ; left out for the main namespace "/"; it ends at the
                                  ; first "," or at the end of the text ("0/admin")
    ack-id       = 1*DIGIT        ; an event asking for an acknowledgement, and its ACK

So ``2["foo"]`` is the event "foo" on "/", ``2/admin,13["foo"]`` the same on "/admin" asking
for ack 13, ``3/admin,13["bar"]`` its acknowledgement, ``0/admin,`` a connection request.
The decoder also takes ``0/admin`` and ``1/admin`` (no ","), as socket.io-parser and
python-socketio do: a namespace with nothing after it runs to the end of the text.  The
encoder always writes the ",".

**Binary attachments.** JSON has no bytes.  Each ``bytes`` value found anywhere in the data (at
any depth of lists and dicts) is taken out and replaced by a *placeholder*
``{"_placeholder":true,"num":N}``, N counting from 0 in depth-first order; the type becomes
BINARY_EVENT (5) or BINARY_ACK (6) and the text announces the count.  The attachments follow as
Engine.IO binary messages, in order::

    51-["baz",{"_placeholder":true,"num":0}]     then the message b"\\x01\\x02\\x03\\x04"

:func:`deconstruct` and :func:`reconstruct` do the two halves; :func:`encode` returns the text
first and the attachments after it; :class:`Decoder` collects them back.

**What the data must look like** (checked when a :class:`Packet` is built, raising
:class:`~lablib.errors.LocalProtocolError`, and when one is decoded, raising
:class:`~lablib.errors.PacketError`), as the reference parser checks it (socket.io-parser
``isPayloadValid``)::

    CONNECT        an object (the auth payload, or the server's {"sid": ...}), or nothing
    DISCONNECT     nothing
    EVENT          a non-empty array whose first item is the event name (a string)
    ACK            an array, possibly empty; the ack id is required
    CONNECT_ERROR  an object ({"message": ..., "data": ...}) or a string

Decoding is stricter than both reference parsers and says why it refuses: an unknown type, a
malformed or out-of-bounds attachment count, a placeholder whose ``num`` is out of range,
text that is not JSON, data of the wrong shape for its type, an ack id where none belongs
(or none on an ACK), an ack id above 2**53 - 1 (the largest integer a JavaScript peer can hold
exactly), a binary message when no attachment is expected, a text message while attachments
are still expected.  It never raises anything but :class:`~lablib.errors.PacketError`.

Text is JSON as ``JSON.stringify`` writes it: compact, non-ASCII characters as themselves
(python-socketio escapes them as ``\\uXXXX``; both decode to the same value).
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..errors import LocalProtocolError, PacketError

__all__ = [
    "PacketType", "Packet", "Decoder", "encode", "decode", "deconstruct", "reconstruct",
    "has_binary", "RESERVED_EVENTS", "MAX_ACK_ID", "DEFAULT_MAX_ATTACHMENTS",
]

#: Event names with a meaning of their own in the reference API; the reference parser refuses
#: them in an EVENT (socket.io-parser ``RESERVED_EVENTS``).
RESERVED_EVENTS = frozenset({
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
})

#: The largest ack id: 2**53 - 1, JavaScript's ``Number.MAX_SAFE_INTEGER``.  A longer id could
#: not be matched by a JavaScript peer (it would round it), so it is refused.
MAX_ACK_ID = 2**53 - 1

#: Attachments one binary packet may announce.  socket.io-parser 4.2.6 added the same bound
#: (the Decoder's ``maxAttachments`` option, default 10) to cap what a peer can make us hold.
DEFAULT_MAX_ATTACHMENTS = 10

_ATTACHMENT_COUNT_DIGITS = 10   # longer counts are refused before int() sees them
_BINARY = (bytes, bytearray, memoryview)
_SURROGATE = re.compile("[\ud800-\udfff]")


class PacketType(enum.IntEnum):
    """The seven packet types (the "Exchange protocol" table of the spec)."""

    CONNECT = 0        #: client: join a namespace (data: auth); server: accepted (data: {"sid"})
    DISCONNECT = 1     #: leave a namespace, either side; no answer expected
    EVENT = 2          #: ["name", arg, ...], optionally with an ack id
    ACK = 3            #: [arg, ...], the answer to the event with the same ack id
    CONNECT_ERROR = 4  #: server: the namespace connection is refused
    BINARY_EVENT = 5   #: an EVENT with binary attachments
    BINARY_ACK = 6     #: an ACK with binary attachments


_TYPE_CHAR = {kind: str(int(kind)) for kind in PacketType}          #: EVENT -> "2"
_TYPE_OF_CHAR = {char: kind for kind, char in _TYPE_CHAR.items()}   #: "2" -> EVENT
_BINARY_OF = {PacketType.EVENT: PacketType.BINARY_EVENT, PacketType.ACK: PacketType.BINARY_ACK}
_PLAIN_OF = {v: k for k, v in _BINARY_OF.items()}


# --- the data: JSON values and bytes ----------------------------------------------------------

def has_binary(data: Any) -> bool:
    """True if ``bytes`` (or bytearray/memoryview) occur anywhere in ``data``."""
    if isinstance(data, _BINARY):
        return True
    if isinstance(data, (list, tuple)):
        return any(has_binary(item) for item in data)
    if isinstance(data, dict):
        return any(has_binary(value) for value in data.values())
    return False


def deconstruct(data: Any) -> tuple[Any, list[bytes]]:
    """Take the binary values out of ``data``.

    Returns a copy of ``data`` in which the n-th ``bytes`` value met (depth first, lists in
    order, dicts in insertion order) is replaced by ``{"_placeholder": True, "num": n}``, and
    the list of those values.  ``data`` itself is not modified::

        >>> deconstruct(["baz", b"\\x01\\x02", {"x": b"\\x03"}])
        (['baz', {'_placeholder': True, 'num': 0}, {'x': {'_placeholder': True, 'num': 1}}], [b'\\x01\\x02', b'\\x03'])
    """
    attachments: list[bytes] = []

    def take_out(value: Any) -> Any:
        if isinstance(value, _BINARY):
            attachments.append(bytes(value))
            return {"_placeholder": True, "num": len(attachments) - 1}
        if isinstance(value, (list, tuple)):
            return [take_out(item) for item in value]
        if isinstance(value, dict):
            return {key: take_out(item) for key, item in value.items()}
        return value

    return take_out(data), attachments


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, dict) and value.get("_placeholder") is True


def _placeholder_num(value: dict, count: int) -> int:
    num = value.get("num")
    if type(num) is not int or not 0 <= num < count:
        raise PacketError(f"attachment placeholder num {num!r} out of range "
                          f"(the packet has {count} attachment{'s' if count != 1 else ''})")
    return num


def reconstruct(data: Any, attachments: Sequence[bytes]) -> Any:
    """Put the attachments back: the inverse of :func:`deconstruct`.

    Every dict whose ``"_placeholder"`` is ``true`` is replaced by ``attachments[num]``; a
    ``num`` that is not an integer in range raises PacketError.  Returns a new value.
    """
    count = len(attachments)

    def put_back(value: Any) -> Any:
        if _is_placeholder(value):
            return attachments[_placeholder_num(value, count)]
        if isinstance(value, list):
            return [put_back(item) for item in value]
        if isinstance(value, dict):
            return {key: put_back(item) for key, item in value.items()}
        return value

    return put_back(data)


def _check_placeholders(data: Any, count: int) -> None:
    """Refuse a placeholder that points past the announced attachments, before they arrive."""
    if _is_placeholder(data):
        _placeholder_num(data, count)
    elif isinstance(data, list):
        for item in data:
            _check_placeholders(item, count)
    elif isinstance(data, dict):
        for item in data.values():
            _check_placeholders(item, count)


def _scan(value: Any) -> bool:
    """Check that ``value`` is JSON data (+ bytes) we can send; returns whether it holds bytes.

    One walk does both jobs; a value JSON cannot carry raises LocalProtocolError.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return False
    if isinstance(value, _BINARY):
        return True
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LocalProtocolError(f"cannot encode the data: {value!r} is not a JSON number")
        return False
    binary = False
    if isinstance(value, (list, tuple)):
        for item in value:
            binary = _scan(item) or binary
        return binary
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise LocalProtocolError("cannot encode the data: object keys must be strings, "
                                         f"not {type(key).__name__}")
            binary = _scan(item) or binary
        return binary
    raise LocalProtocolError(f"cannot encode the data: {type(value).__name__} is not JSON data")


# --- the packet -------------------------------------------------------------------------------

def _shape_problem(kind: PacketType, data: Any, ack_id: int | None,
                   reserved: frozenset[str] = frozenset()) -> str | None:
    """Why ``data``/``ack_id`` do not fit a packet of type ``kind`` (None if they do)."""
    # EVENT and ACK first: they are what flows once a connection is up.
    if kind is PacketType.EVENT or kind is PacketType.BINARY_EVENT:
        if not isinstance(data, list) or not data:
            return f"{kind.name} data must be a non-empty array"
        if not isinstance(data[0], str):
            return f"{kind.name} data must start with the event name (a string)"
        if data[0] in reserved:
            return f"{data[0]!r} is a reserved event name"
        return None
    if kind is PacketType.ACK or kind is PacketType.BINARY_ACK:
        if ack_id is None:
            return f"a {kind.name} packet needs an ack id"
        if not isinstance(data, list):
            return f"{kind.name} data must be an array"
        return None
    if ack_id is not None:
        return f"a {kind.name} packet carries no ack id"
    if kind is PacketType.CONNECT:
        if data is not None and not isinstance(data, dict):
            return "CONNECT data must be an object (or absent)"
    elif kind is PacketType.DISCONNECT:
        if data is not None:
            return "a DISCONNECT packet carries no data"
    elif not isinstance(data, (dict, str)):   # CONNECT_ERROR
        return "CONNECT_ERROR data must be an object or a string"
    return None


@dataclass(frozen=True, slots=True)
class Packet:
    """One Socket.IO packet.

    ``data`` is JSON-like (None, bool, int, float, str, list, dict with str keys) and may hold
    ``bytes`` at any depth in an EVENT or ACK.  ``id`` is the ack id (0 to 2**53 - 1).

    One normalisation keeps ``decode(encode(p)) == p``: the type says whether the data holds
    bytes.  ``Packet(EVENT, ["x", b"1"])`` *is* a BINARY_EVENT, ``Packet(BINARY_ACK, [1], id=3)``
    without bytes is an ACK.  Anything that could not be encoded raises LocalProtocolError.
    """

    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None

    def __post_init__(self) -> None:
        kind = self.type
        if type(kind) is not PacketType:   # (a plain int; PacketType(member) costs a call)
            try:
                kind = PacketType(kind)
            except ValueError:
                raise LocalProtocolError(f"unknown Socket.IO packet type {self.type!r}") from None
        if not isinstance(self.namespace, str) or not self.namespace.startswith("/"):
            raise LocalProtocolError(f"a namespace starts with '/': {self.namespace!r}")
        if "," in self.namespace:
            raise LocalProtocolError(f"a namespace cannot contain ',': {self.namespace!r}")
        if self.id is not None and (type(self.id) is not int or not 0 <= self.id <= MAX_ACK_ID):
            raise LocalProtocolError(f"an ack id is an integer from 0 to 2**53-1, not {self.id!r}")
        try:
            binary = _scan(self.data)
        except RecursionError:
            raise LocalProtocolError("cannot encode the data: nested too deeply") from None
        if binary and kind in _BINARY_OF:
            kind = _BINARY_OF[kind]
        elif not binary and kind in _PLAIN_OF:
            kind = _PLAIN_OF[kind]
        elif binary and kind not in _PLAIN_OF:
            raise LocalProtocolError(f"a {kind.name} packet cannot carry binary data")
        problem = _shape_problem(kind, self.data, self.id)
        if problem:
            raise LocalProtocolError(problem)
        object.__setattr__(self, "type", kind)

    @classmethod
    def _trusted(cls, kind: PacketType, namespace: str, data: Any, ack_id: int | None) -> "Packet":
        """Build a packet the decoder has already checked, without checking it again."""
        # Through the slot descriptors (see below the class): half the cost of
        # object.__setattr__ per field.
        packet = _new_object(cls)
        _set_type(packet, kind)
        _set_namespace(packet, namespace)
        _set_data(packet, data)
        _set_id(packet, ack_id)
        return packet

    @property
    def binary(self) -> bool:
        """True for BINARY_EVENT and BINARY_ACK: attachments follow the text."""
        return self.type in _PLAIN_OF

    def __repr__(self) -> str:
        parts = [self.type.name]
        if self.namespace != "/":
            parts.append(f"namespace={self.namespace!r}")
        if self.data is not None:
            parts.append(f"data={self.data!r}")
        if self.id is not None:
            parts.append(f"id={self.id}")
        return f"Packet({', '.join(parts)})"


_new_object = object.__new__
_set_type, _set_namespace, _set_data, _set_id = (
    Packet.__dict__[name].__set__ for name in ("type", "namespace", "data", "id"))


# --- encoding ---------------------------------------------------------------------------------

_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# JSONEncoder.encode() builds a new C encoder on every call (about 0.7 µs, more than encoding
# a short event).  The data of a Packet has been checked by _scan() already (finite floats,
# str keys, no cycles: a cycle is "nested too deeply" there), so the one C encoder below, made
# once with the same settings (compact separators, non-ASCII as itself, no circular-reference
# bookkeeping), writes the same text.  Without the C accelerator: the plain encoder.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER = None if _c_make_encoder is None else _c_make_encoder(
    None, None, json.encoder.encode_basestring, None, ":", ",", False, False, False)


def _to_json(data: Any) -> str:
    try:
        if _C_ENCODER is not None and not isinstance(data, str):
            text = "".join(_C_ENCODER(data, 0))
        else:
            text = _JSON_ENCODER.encode(data)
    except RecursionError:
        raise LocalProtocolError("cannot encode the data: nested too deeply") from None
    if text.isascii():   # the common case: no surrogate can be in there
        return text
    # A lone surrogate cannot be written as UTF-8; escape it, as JSON.stringify does.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def encode(packet: Packet) -> list[str | bytes]:
    """Serialise a packet: ``[text]``, or ``[text, attachment0, attachment1, ...]``.

    Each item is one Engine.IO message (text, then binary).  Nothing limits the attachments
    here, but a receiver may (ours and socket.io-parser >= 4.2.6 refuse more than 10 by
    default)::

        >>> encode(Packet(PacketType.EVENT, "/admin", ["foo"], id=13))
        ['2/admin,13["foo"]']
        >>> encode(Packet(PacketType.EVENT, data=["baz", b"\\x01\\x02\\x03\\x04"]))
        ['51-["baz",{"_placeholder":true,"num":0}]', b'\\x01\\x02\\x03\\x04']
    """
    kind = packet.type
    if kind is PacketType.BINARY_EVENT or kind is PacketType.BINARY_ACK:
        data, attachments = deconstruct(packet.data)
        text = f"{int(kind)}{len(attachments)}-"
    else:
        data, attachments = packet.data, []
        text = _TYPE_CHAR[kind]
    if packet.namespace != "/":
        text += packet.namespace + ","
    if packet.id is not None:
        text += str(packet.id)
    if data is not None:
        text += _to_json(data)
    return [text, *attachments]


# --- decoding ---------------------------------------------------------------------------------

class Decoder:
    """Turns the Engine.IO messages of one connection back into packets.

    Feed every message, in order, to :meth:`receive`.  A text message is a packet; if it is
    binary, ``receive`` returns None until the announced attachments (binary messages) have
    arrived, then the packet with the bytes put back::

        >>> d = Decoder()
        >>> d.receive('51-["baz",{"_placeholder":true,"num":0}]') is None
        True
        >>> d.receive(b"\\x01\\x02")
        Packet(BINARY_EVENT, data=['baz', b'\\x01\\x02'])

    ``max_attachments`` bounds what a peer can make us hold; ``reserved_events`` are event names
    refused in an EVENT (the reference parser's list by default; pass ``()`` to allow all).
    Any error raises PacketError and resets the decoder; the connection should then be closed.
    """

    def __init__(self, *, max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
                 reserved_events: Iterable[str] = RESERVED_EVENTS) -> None:
        self.max_attachments = max_attachments
        self.reserved_events = frozenset(reserved_events)
        self._partial: Packet | None = None       # the binary packet being completed
        self._expected = 0                        # attachments it announced
        self._attachments: list[bytes] = []

    @property
    def awaiting_attachments(self) -> int:
        """How many binary messages the decoder still expects (0 when between packets)."""
        return self._expected - len(self._attachments) if self._partial else 0

    def reset(self) -> None:
        """Forget a partly received binary packet."""
        self._partial, self._expected, self._attachments = None, 0, []

    def receive(self, message: str | bytes) -> Packet | None:
        """Feed one Engine.IO message; returns the completed packet, or None."""
        try:
            if isinstance(message, str):
                return self._receive_text(message)
            if isinstance(message, _BINARY):
                return self._receive_attachment(bytes(message))
            raise PacketError(f"a message is str or bytes, not {type(message).__name__}")
        except PacketError:
            self.reset()
            raise
        except RecursionError:
            self.reset()
            raise PacketError("data nested too deeply") from None

    def _receive_text(self, text: str) -> Packet | None:
        if self._partial is not None:
            raise PacketError(f"a text packet arrived while {self.awaiting_attachments} "
                              "binary attachment(s) were still expected")
        packet, count = self._parse(text)
        if count:
            self._partial, self._expected = packet, count
            return None
        return packet

    def _receive_attachment(self, data: bytes) -> Packet | None:
        if self._partial is None:
            raise PacketError("a binary message arrived but no attachment was expected")
        self._attachments.append(data)
        if len(self._attachments) < self._expected:
            return None
        partial, attachments = self._partial, self._attachments
        self.reset()
        data = reconstruct(partial.data, attachments)
        kind = _BINARY_OF[partial.type] if has_binary(data) else partial.type
        return Packet._trusted(kind, partial.namespace, data, partial.id)

    def _parse(self, text: str) -> tuple[Packet, int]:
        """Parse the text of one packet; returns it (placeholders still in) and its attachment count."""
        if not text:
            raise PacketError("empty packet")
        kind = _TYPE_OF_CHAR.get(text[0])
        if kind is None:
            raise PacketError(f"unknown packet type {text[0]!r}")
        pos = 1
        count = 0
        if kind in _PLAIN_OF:
            count, pos = self._parse_attachment_count(text, pos)
        namespace = "/"
        if text.startswith("/", pos):
            comma = text.find(",", pos)
            if comma < 0:   # "0/admin": the namespace runs to the end (socket.io-parser)
                namespace, pos = text[pos:], len(text)
            else:
                namespace, pos = text[pos:comma], comma + 1
        ack_id, pos = _parse_ack_id(text, pos)
        data = _parse_json(text[pos:]) if pos < len(text) else None
        problem = _shape_problem(kind, data, ack_id, self.reserved_events)
        if problem:
            raise PacketError(problem)
        if count:
            _check_placeholders(data, count)
            kind = _PLAIN_OF[kind]  # the bytes are not in yet; putting them back makes it binary
        return Packet._trusted(kind, namespace, data, ack_id), count

    def _parse_attachment_count(self, text: str, pos: int) -> tuple[int, int]:
        dash = text.find("-", pos, pos + _ATTACHMENT_COUNT_DIGITS + 1)
        digits = text[pos:dash] if dash >= 0 else ""
        if not (digits.isascii() and digits.isdigit()):
            raise PacketError("a binary packet must start with its attachment count and '-'")
        count = int(digits)
        if count == 0:
            raise PacketError("a binary packet announces 0 attachments")
        if count > self.max_attachments:
            raise PacketError(f"{count} attachments announced, more than the limit "
                              f"of {self.max_attachments}")
        return count, dash + 1


_ASCII_DIGITS = re.compile("[0-9]*")
_MAX_ACK_ID_DIGITS = len(str(MAX_ACK_ID))


def _parse_ack_id(text: str, pos: int) -> tuple[int | None, int]:
    end = _ASCII_DIGITS.match(text, pos).end()
    if end == pos:
        return None, pos
    if end - pos > _MAX_ACK_ID_DIGITS or (ack_id := int(text[pos:end])) > MAX_ACK_ID:
        raise PacketError(f"ack id too long (more than 2**53-1): {text[pos:end][:40]!r}")
    return ack_id, end


def _refuse_constant(name: str) -> Any:
    raise PacketError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999": valid JSON, but not a number we could send back
        raise PacketError(f"number {text[:40]!r} out of range")
    return value


_JSON_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _parse_json(text: str) -> Any:
    try:
        return _JSON_DECODER.decode(text)
    except PacketError:
        raise
    except RecursionError:
        raise PacketError("data nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() refusing a 5000-digit number
        raise PacketError(f"data is not JSON: {exc}") from None


def decode(messages: str | Sequence[str | bytes], *,
           max_attachments: int = DEFAULT_MAX_ATTACHMENTS) -> Packet:
    """Decode one complete packet: its text, or its text followed by its attachments."""
    if isinstance(messages, str):
        messages = [messages]
    decoder = Decoder(max_attachments=max_attachments)
    packet = None
    for index, message in enumerate(messages):
        packet = decoder.receive(message)
        if packet is not None and index != len(messages) - 1:
            raise PacketError("more messages than one packet")
    if packet is None:
        raise PacketError(f"incomplete packet: {decoder.awaiting_attachments} attachment(s) missing")
    return packet
