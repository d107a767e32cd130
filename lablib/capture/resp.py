"""RESP, the Redis serialization protocol: an incremental decoder and the dissector's Redis layer.

What a Socket.IO adapter says through Redis is RESP on a TCP connection: the client sends
commands as arrays of bulk strings, the server answers with replies, and a subscribed connection
receives the published messages ("Redis serialization protocol specification", redis.io docs,
``/docs/latest/develop/reference/protocol-spec/``).  Every value starts with a type byte and
ends its header with CRLF::

    *3\\r\\n$7\\r\\nPUBLISH\\r\\n$12\\r\\nsocket.io#/#\\r\\n$5\\r\\nhello\\r\\n   ["PUBLISH", "socket.io#/#", b"hello"]
    :1\\r\\n                                                       1 (one subscriber got it)

=====  ==========================  =======================================================
byte   type                        decoded as
=====  ==========================  =======================================================
``+``  simple string               :class:`SimpleString` (a ``str``)
``-``  simple error                :class:`ErrorReply`
``:``  integer                     ``int``
``$``  bulk string                 ``bytes`` (``$-1``, RESP2's null bulk string: ``None``)
``*``  array                       ``list`` (``*-1``, RESP2's null array: ``None``)
``_``  null (RESP3)                ``None``
``#``  boolean (RESP3)             ``bool``
``,``  double (RESP3)              ``float``
``(``  big number (RESP3)          ``int``
``!``  bulk error (RESP3)          :class:`ErrorReply`
``=``  verbatim string (RESP3)     :class:`Verbatim` (format, text)
``%``  map (RESP3)                 :class:`Map` (pairs in order: keys may be unhashable)
``~``  set (RESP3)                 :class:`Set` (items in order)
``>``  push (RESP3)                :class:`Push` (out-of-band data: pub/sub messages)
``|``  attribute (RESP3)           :class:`Attribute`, then the value it annotates
=====  ==========================  =======================================================

In RESP2 a subscribed connection receives its messages as plain arrays
(``["message", channel, data]``, ``["pmessage", pattern, channel, data]``); RESP3 (after
``HELLO 3``) sends the same as pushes.  A client may also send an *inline command*, a plain
line such as ``PING\\r\\n`` (for telnet): the decoder reads it as an :class:`InlineCommand`.

:class:`RespParser` is sans-I/O: ``feed(bytes)``, then ``next_value()`` until it returns
:data:`NEED_DATA`.  It never holds more than the value being read and refuses absurd sizes.

In the dissector
----------------
:func:`lablib.capture.dissect.dissect` hands a conversation whose client speaks RESP (its
first byte is ``*``) to :func:`dissect_streams` here instead of HTTP.  Each command and reply
becomes a record of layer ``resp`` (kinds ``command``, ``reply``, ``push``); the payload of a
PUBLISH and of each message received is offered to the decoders of carrier ``"redis"``, with
the channel as the message's ``target`` - :mod:`lablib.socketio.redis_dissect` decodes the
Socket.IO Redis adapter's MessagePack there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# NEED_DATA: what RespParser.next_value returns when it needs bytes (every parser's sentinel)
from .._util import NEED_DATA
from ..errors import LablibError
from .decoding import Message
from .decoding import preview as _preview

__all__ = [
    "NEED_DATA", "RespParser", "MalformedRESP", "SimpleString", "ErrorReply", "Verbatim", "Map",
    "Set", "Push", "Attribute", "InlineCommand", "looks_like_resp",
    "dissect_streams", "encode_command", "PUBSUB_MESSAGES",
]

#: The first bytes a RESP value may start with.
TYPE_BYTES = b"+-:$*_#,(!=%~>|"
MAX_BULK = 512 * 1024 * 1024   #: Redis's own limit on a bulk string (proto-max-bulk-len)
MAX_ELEMENTS = 1024 * 1024     #: aggregates longer than this are refused (memory stays bounded)
MAX_LINE = 64 * 1024           #: a header or simple-string line longer than this is refused
MAX_DEPTH = 64                 #: nesting deeper than this is refused
#: The pub/sub message kinds a subscribed connection receives, and where their data is.
PUBSUB_MESSAGES = {b"message": 2, b"pmessage": 3, b"smessage": 2}




class MalformedRESP(LablibError):
    """The bytes are not RESP (the peer is to blame)."""


class SimpleString(str):
    """``+OK``: a short status line (a ``str`` that remembers it was a simple string)."""

    def __repr__(self) -> str:
        return f"+{str.__repr__(self)}"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """``-ERR unknown command`` or a RESP3 bulk error: the reply is an error, not a value."""

    message: str

    @property
    def code(self) -> str:
        """The first word (``ERR``, ``WRONGTYPE``, ...), by convention the error's kind."""
        return self.message.split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class Verbatim:
    """``=15\\r\\ntxt:Some string``: a string with a 3-letter format (``txt``, ``mkd``)."""

    format: str
    text: str


@dataclass(frozen=True, slots=True)
class Map:
    """A RESP3 map, its (key, value) pairs in order."""

    items: tuple[tuple[Any, Any], ...]

    def get(self, key: Any, default: Any = None) -> Any:
        return next((v for k, v in self.items if k == key), default)


@dataclass(frozen=True, slots=True)
class Set:
    """A RESP3 set, its items in the order sent."""

    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Push:
    """A RESP3 push: data the server sends unasked (pub/sub messages, invalidations)."""

    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Attribute:
    """RESP3 ``|``: auxiliary data about the reply that follows (``value``)."""

    attributes: Map
    value: Any


@dataclass(frozen=True, slots=True)
class InlineCommand:
    """A command sent as a plain line (``PING\\r\\n``), split on spaces."""

    args: tuple[bytes, ...]


def encode_command(*args: bytes | str | int) -> bytes:
    """A command as clients send it: an array of bulk strings (for tests and notebooks)."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class RespParser:
    """Incremental RESP decoder: bytes in, values out.

    ::

        parser = RespParser()
        parser.feed(b"*1\\r\\n$4\\r\\nPI")
        parser.next_value()            # NEED_DATA
        parser.feed(b"NG\\r\\n")
        parser.next_value()            # [b'PING']

    ``consumed`` counts the bytes of the values returned so far (their offsets in the stream);
    ``buffered`` the bytes waiting.  A value is returned only when complete; malformed input
    raises :class:`MalformedRESP` and the parser is then unusable.  ``inline=True`` accepts
    inline commands (a client's stream).
    """

    def __init__(self, *, inline: bool = False, max_bulk: int = MAX_BULK) -> None:
        self._buffer = bytearray()
        self.consumed = 0
        self.inline = inline
        self.max_bulk = max_bulk

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_value(self) -> Any:
        """The next complete value, or :data:`NEED_DATA`."""
        if not self._buffer:
            return NEED_DATA
        try:
            value, end = self._value(0, 0)
        except _Incomplete:
            return NEED_DATA
        del self._buffer[:end]
        self.consumed += end
        return value

    def values(self) -> list[Any]:
        """Every complete value buffered now."""
        out = []
        while (value := self.next_value()) is not NEED_DATA:
            out.append(value)
        return out

    # -- reading -------------------------------------------------------------------------------

    def _line(self, start: int) -> tuple[bytes, int]:
        """The bytes from ``start`` to the next CRLF, and the position after it."""
        end = self._buffer.find(b"\r\n", start, start + MAX_LINE + 2)
        if end < 0:
            if len(self._buffer) - start > MAX_LINE:
                raise MalformedRESP(f"a line longer than {MAX_LINE} bytes")
            raise _Incomplete
        return bytes(self._buffer[start:end]), end + 2

    def _integer(self, line: bytes, what: str, max_digits: int = 20) -> int:
        digits = line[1:] if line[:1] in (b"-", b"+") else line
        if not digits.isdigit() or len(digits) > max_digits:   # isdigit: ASCII for bytes
            raise MalformedRESP(f"{what} is not an integer: {line[:40]!r}")
        return int(line)

    def _length(self, line: bytes, kind: str, limit: int) -> int:
        length = self._integer(line, f"the length of a {kind}")
        if length < -1:
            raise MalformedRESP(f"negative length {length} for a {kind}")
        if length > limit:
            raise MalformedRESP(f"a {kind} of {length} exceeds the limit {limit}")
        return length

    def _blob(self, start: int, line: bytes, kind: str) -> tuple[bytes | None, int]:
        length = self._length(line, kind, self.max_bulk)
        if length == -1:
            return None, start
        end = start + length
        if len(self._buffer) < end + 2:
            raise _Incomplete
        if self._buffer[end:end + 2] != b"\r\n":
            raise MalformedRESP(f"a {kind} of {length} bytes is not followed by CRLF")
        return bytes(self._buffer[start:end]), end + 2

    def _items(self, start: int, count: int, depth: int) -> tuple[list[Any], int]:
        items, pos = [], start
        for _ in range(count):
            item, pos = self._value(pos, depth + 1)
            items.append(item)
        return items, pos

    def _value(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise MalformedRESP(f"values nested deeper than {MAX_DEPTH}")
        if pos >= len(self._buffer):
            raise _Incomplete
        kind = bytes(self._buffer[pos:pos + 1])
        if kind not in TYPE_BYTES or not kind:
            if self.inline and depth == 0:
                line, end = self._line(pos)
                return InlineCommand(tuple(line.split())), end
            raise MalformedRESP(f"unknown RESP type byte {kind!r}")
        line, pos = self._line(pos + 1)
        if kind == b"+":
            return SimpleString(line.decode("utf-8", "replace")), pos
        if kind == b"-":
            return ErrorReply(line.decode("utf-8", "replace")), pos
        if kind == b":":
            return self._integer(line, "an integer"), pos
        if kind == b"(":
            return self._integer(line, "a big number", 4000), pos   # (Python's int limit: 4300)
        if kind == b"_":
            if line:
                raise MalformedRESP(f"a null carries nothing, not {line[:40]!r}")
            return None, pos
        if kind == b"#":
            if line not in (b"t", b"f"):
                raise MalformedRESP(f"a boolean is t or f, not {line[:40]!r}")
            return line == b"t", pos
        if kind == b",":
            try:
                return float(line), pos   # also "inf", "-inf", "nan"
            except ValueError:
                raise MalformedRESP(f"not a double: {line[:40]!r}") from None
        if kind in (b"$", b"!", b"="):
            data, pos = self._blob(pos, line, "bulk string")
            if kind == b"$" or data is None:
                return data, pos
            text = data.decode("utf-8", "replace")
            if kind == b"!":
                return ErrorReply(text), pos
            if len(text) < 4 or text[3] != ":":
                raise MalformedRESP(f"a verbatim string starts with 'xxx:', not {text[:8]!r}")
            return Verbatim(text[:3], text[4:]), pos
        # aggregates: * ~ > count items, % | count pairs
        count = self._length(line, "aggregate", MAX_ELEMENTS)
        if count == -1:
            if kind != b"*":
                raise MalformedRESP("only RESP2 arrays may have the length -1")
            return None, pos
        if kind in (b"%", b"|"):
            flat, pos = self._items(pos, 2 * count, depth)
            pairs = Map(tuple(zip(flat[0::2], flat[1::2])))
            if kind == b"%":
                return pairs, pos
            value, pos = self._value(pos, depth)
            return Attribute(pairs, value), pos
        items, pos = self._items(pos, count, depth)
        if kind == b"*":
            return items, pos
        return (Set(tuple(items)) if kind == b"~" else Push(tuple(items))), pos


class _Incomplete(Exception):
    """Internal: the buffer ends inside the value (nothing is consumed)."""


# --- the dissector's Redis layer -------------------------------------------------------------

def looks_like_resp(c2s: bytes, s2c: bytes) -> bool:
    """Is this conversation RESP rather than HTTP?  A client's first command is an array
    (``*<digits>``); with nothing sent by the client, the server's first byte decides."""
    if c2s:
        return c2s[:1] == b"*" and c2s[1:2].isdigit()
    return bool(s2c) and s2c[:1] in TYPE_BYTES


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex(" ")
    return str(value)


def _show(value: Any, limit: int = 60) -> str:
    """A short readable rendering of a RESP value."""
    if value is None:
        return "(nil)"
    if isinstance(value, SimpleString):
        return f"+{value}"
    if isinstance(value, ErrorReply):
        return f"-{value.message}"
    if isinstance(value, bytes):
        text = None
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            pass
        if text is not None and text.isprintable():
            return repr(text if len(text) <= limit else text[:limit - 3] + "...")
        return f"<{len(value)} bytes: {_preview(value, None)}>"
    if isinstance(value, (list, Set, Push)):
        items = value if isinstance(value, list) else value.items
        return "[" + ", ".join(_show(v, 30) for v in items) + "]"
    if isinstance(value, Map):
        return "{" + ", ".join(f"{_show(k, 20)}: {_show(v, 30)}" for k, v in value.items) + "}"
    return repr(value)


def _command(value: Any) -> tuple[str, list[Any]] | None:
    """``("PUBLISH", [channel, payload])`` for a command array (or an inline command)."""
    args = value.args if isinstance(value, InlineCommand) else value
    if not isinstance(args, (list, tuple)) or not args or not isinstance(args[0], bytes):
        return None
    return args[0].decode("ascii", "replace").upper(), list(args[1:])


def _pubsub_message(value: Any) -> tuple[str, bytes, bytes] | None:
    """``(kind, channel, data)`` of a received pub/sub message (RESP2 array or RESP3 push)."""
    items = value.items if isinstance(value, Push) else value
    if not isinstance(items, (list, tuple)) or not items or not isinstance(items[0], bytes):
        return None
    at = PUBSUB_MESSAGES.get(items[0].lower())
    if at is None or len(items) != at + 1:
        return None
    channel, data = items[at - 1], items[at]
    if not isinstance(channel, bytes) or not isinstance(data, bytes):
        return None
    return items[0].decode(), channel, data


def dissect_streams(dissector, c2s, s2c) -> None:
    """Called by the dissector for a RESP conversation: both directions, value by value."""
    for stream in (c2s, s2c):
        _dissect_direction(dissector, stream)


def _dissect_direction(dissector, stream) -> None:
    base = stream.offset
    parser = RespParser(inline=stream.direction == "c2s")
    parser.feed(stream.data[base:])
    while True:
        start = stream.offset
        try:
            value = parser.next_value()
        except MalformedRESP as exc:
            dissector.error(stream, "malformed", f"malformed RESP: {exc}", obj=exc)
            return
        if value is NEED_DATA:
            if parser.buffered:
                dissector.error(stream, "truncated",
                                f"stream ends inside a RESP value ({parser.buffered} bytes)")
            return
        stream.offset = base + parser.consumed
        _record(dissector, stream, value, start, stream.data[start:stream.offset])


def _record(dissector, stream, value: Any, start: int, raw: bytes) -> None:
    fields: dict[str, Any] = {"value": value}
    inner: Message | None = None
    command = _command(value) if stream.direction == "c2s" else None
    message = _pubsub_message(value) if stream.direction == "s2c" else None
    if command is not None:
        name, args = command
        kind = "command"
        fields.update(command=name, args=args)
        summary = " ".join([name, *(_show(a) for a in args)])
        if name in ("PUBLISH", "SPUBLISH") and len(args) == 2 and isinstance(args[1], bytes):
            fields.update(channel=_text(args[0]), data=args[1])
            inner = Message("redis", args[1], None, stream.direction, _text(args[0]), None, value)
    elif message is not None:
        kind_name, channel, data = message
        kind = "push"
        fields.update(message=kind_name, channel=_text(channel), data=data,
                      resp3=isinstance(value, Push))
        summary = f"{kind_name} {_show(channel)} {_show(data)}"
        inner = Message("redis", data, None, stream.direction, _text(channel), None, value)
    else:
        kind = "push" if isinstance(value, Push) else "reply"
        summary = _show(value)
        if isinstance(value, ErrorReply):
            fields["error"] = value.message
    record = dissector.emit(stream, "resp", kind, summary, fields, start, raw, value)
    if inner is not None:
        dissector.decode(record, inner)
