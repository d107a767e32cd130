"""RFC 6455 §5 — the base framing protocol.

The frame layout (§5.2), one row = 32 bits::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Extended payload length continued, if payload len == 127  |
    + - - - - - - - - - - - - - - - +-------------------------------+
    |                               |Masking-key, if MASK set to 1  |
    +-------------------------------+-------------------------------+
    | Masking-key (continued)       |          Payload Data         |
    +-------------------------------- - - - - - - - - - - - - - - - +

This module knows frames only: :func:`encode_frame` turns fields into bytes, and
:class:`FrameParser` turns a byte stream (arriving in any chunks) back into :class:`Frame`
objects, rejecting anything §5 forbids.  Messages (fragments joined, text checked) live in
:mod:`lablib.websocket.messages`, closing in :mod:`lablib.websocket.connection`.

The module reads in the order of §5.2: the opcodes and close codes, the :class:`Frame`, the
header byte by byte, :func:`encode_frame`, the :class:`FrameParser`, masking (§5.3) and the
close payload (§5.5.1).  How the parser and the masking are made fast (batch unmasking with
numpy, big-integer XOR, building frames as plain tuples) lives in :mod:`._fast`, which
decides nothing of its own.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from . import _fast
from ..errors import PayloadTooBig, RemoteProtocolError, WebSocketProtocolError
# "The parser needs more bytes" (h11's sentinel idea).  One object for the frame parser and the
# HTTP parsers, so ``result is NEED_DATA`` holds whichever module it was imported from.
from .._util import NEED_DATA, NeedData as _NeedData

__all__ = [
    "Opcode", "CloseCode", "Frame", "FrameParser", "NEED_DATA",
    "encode_frame", "apply_mask", "parse_close_payload", "encode_close_payload",
]


class Opcode(enum.IntEnum):
    """§5.2 / §11.8: what the payload of a frame means."""

    CONT = 0x0    #: continuation of a fragmented message
    TEXT = 0x1    #: first frame of a text message (UTF-8)
    BINARY = 0x2  #: first frame of a binary message
    CLOSE = 0x8   #: §5.5.1 close, optionally with a 2-byte code and a UTF-8 reason
    PING = 0x9    #: §5.5.2 ping; the peer answers with a pong carrying the same payload
    PONG = 0xA    #: §5.5.3 pong

    @property
    def is_control(self) -> bool:
        """Control frames have opcodes 0x8-0xF (§5.5): ≤125 bytes, never fragmented."""
        return self >= 0x8

    @property
    def is_data(self) -> bool:
        return self < 0x8


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
# Opcodes 0x3-0x7 and 0xB-0xF are reserved (§5.2): receiving one fails the connection.
_KNOWN_OPCODES = {int(op): op for op in Opcode}


class CloseCode(enum.IntEnum):
    """§7.4.1 status codes (plus the IANA registry's 1012-1014)."""

    NORMAL_CLOSURE = 1000         #: the purpose of the connection is fulfilled
    GOING_AWAY = 1001             #: server shutting down, or a browser leaving the page
    PROTOCOL_ERROR = 1002         #: the peer broke RFC 6455
    UNSUPPORTED_DATA = 1003       #: e.g. binary received by an endpoint that only takes text
    NO_STATUS_RCVD = 1005         #: never on the wire: "the close frame had no code"
    ABNORMAL_CLOSURE = 1006       #: never on the wire: "TCP closed without a close frame"
    INVALID_PAYLOAD = 1007        #: e.g. a text message that is not UTF-8 (§8.1)
    POLICY_VIOLATION = 1008       #: generic "you broke our rules"
    MESSAGE_TOO_BIG = 1009        #: a message larger than we accept
    MANDATORY_EXTENSION = 1010    #: client: the server did not negotiate an extension we need
    INTERNAL_ERROR = 1011         #: server: an unexpected condition (e.g. a handler crashed)
    SERVICE_RESTART = 1012        #: IANA registry: the service is restarting
    TRY_AGAIN_LATER = 1013        #: IANA registry: temporarily overloaded
    BAD_GATEWAY = 1014            #: IANA registry: a gateway got a bad answer upstream
    TLS_HANDSHAKE = 1015          #: never on the wire: "the TLS handshake failed"


#: Codes that may never appear in a close frame on the wire (§7.4.1).
FORBIDDEN_ON_WIRE = frozenset({1004, 1005, 1006, 1015})


def is_valid_close_code(code: int) -> bool:
    """§7.4: may ``code`` appear in a close frame?

    1000-2999 belong to the RFC and the IANA registry (only the assigned ones are valid),
    3000-3999 to libraries and frameworks, 4000-4999 to applications.
    """
    if 1000 <= code <= 1014:
        return code not in FORBIDDEN_ON_WIRE
    return 3000 <= code <= 4999


# --- frames ------------------------------------------------------------------------------------

class Frame(NamedTuple):
    """One frame, field by field as in §5.2.

    ``payload`` is always the *unmasked* application data; ``masking_key`` is the key that was
    (or will be) applied on the wire, or ``None`` for an unmasked frame.

    A frame is an immutable named tuple rather than a dataclass for one reason: the parser
    builds one per frame received, and a tuple is built by a single C call, about twice as
    fast as setting seven attributes.  Read it by field name, as you would a dataclass.
    """

    opcode: Opcode
    payload: bytes = b""
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    masking_key: bytes | None = None

    @property
    def mask(self) -> bool:
        """The MASK bit: 1 for every frame a client sends (§5.3)."""
        return self.masking_key is not None

    @property
    def payload_len(self) -> int:
        return len(self.payload)

    @property
    def header_len(self) -> int:
        """2 bytes, +2 or +8 for the extended length, +4 for the masking key."""
        n = len(self.payload)
        extended = 0 if n <= 125 else (2 if n <= 0xFFFF else 8)
        return 2 + extended + (4 if self.masking_key is not None else 0)

    def encode(self) -> bytes:
        """The exact bytes of this frame on the wire."""
        return encode_frame(self.opcode, self.payload, fin=self.fin, rsv1=self.rsv1,
                            rsv2=self.rsv2, rsv3=self.rsv3, masking_key=self.masking_key)

    def __repr__(self) -> str:
        data = self.payload if len(self.payload) <= 32 else self.payload[:29] + b"..."
        flags = "".join(name for name, on in (("fin ", self.fin), ("rsv1 ", self.rsv1),
                                              ("rsv2 ", self.rsv2), ("rsv3 ", self.rsv3)) if on)
        key = f" key={self.masking_key.hex()}" if self.masking_key is not None else ""
        return f"<Frame {self.opcode.name} {flags}len={len(self.payload)}{key} {data!r}>"


# --- the header, byte by byte (§5.2) -------------------------------------------------------------
#
# Byte 0: FIN (0x80), RSV1-3 (0x40, 0x20, 0x10), opcode (0x0F).
# Byte 1: MASK (0x80), payload length (0x7F): 0-125 is the length; 126 says a 16-bit length
#         follows, 127 a 64-bit one (most significant bit 0), in network byte order; the
#         shortest form that fits must be used.
# Then the 4-byte masking key if MASK is 1, then the payload.
#
# What the first header byte says, decoded once for all 256 values (reserved opcodes are never
# looked up: the parser rejects them first): b0 -> (opcode, fin, rsv1, rsv2, rsv3).
FIRST_BYTE = {b0: (_KNOWN_OPCODES[b0 & 0x0F], b0 >= 0x80, b0 & 0x40 != 0, b0 & 0x20 != 0,
                   b0 & 0x10 != 0)
              for b0 in range(256) if b0 & 0x0F in _KNOWN_OPCODES}


# --- encoding ---------------------------------------------------------------------------------

def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False,
                 rsv2: bool = False, rsv3: bool = False, masking_key: bytes | None = None) -> bytes:
    """Serialize one frame (§5.2), always with the minimal length encoding.

    Pass a 4-byte ``masking_key`` to mask the payload (what a client must do); the caller picks
    the key, so a seeded random source gives reproducible bytes.
    """
    n = len(payload)
    if n <= 125 and masking_key is None and not (rsv1 or rsv2 or rsv3):
        # What a server sends most: two header bytes, then the payload as it is.
        return bytes((0x80 | opcode if fin else opcode, n)) + payload
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) \
        | (0x10 if rsv3 else 0) | opcode
    mask_bit = 0x80 if masking_key is not None else 0
    if n <= 125:
        header = bytes((first, mask_bit | n))
    elif n <= 0xFFFF:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if masking_key is None:
        return header + payload
    if len(masking_key) != 4:
        raise ValueError("a masking key is exactly 4 bytes")
    return header + masking_key + apply_mask(payload, masking_key)


# --- parsing ----------------------------------------------------------------------------------

class FrameParser:
    """Incremental frame parser: :meth:`feed` bytes in any chunks, then take the frames that
    are complete: all at once with :meth:`receive_frames` (what the connection does), or one
    at a time with :meth:`next_frame` (what a notebook does to step through a stream).

    ``mask_required`` says what the peer must do: ``True`` on a server (client frames must be
    masked, §5.1), ``False`` on a client (server frames must not be), ``None`` to accept both
    (for dissecting captures).  ``allowed_rsv`` is a bit set (0x40 = RSV1, ...) of the RSV bits
    that a negotiated extension gave meaning to; all others must be 0 (§5.2).  ``max_size``
    bounds a message's payload so that memory stays bounded: a single frame's, or the sum of
    the frames of a fragmented message (§5.4).  The check happens when a frame's header
    arrives, before its payload is buffered.

    Errors raise :class:`~lablib.errors.WebSocketProtocolError` (close code 1002) or
    :class:`~lablib.errors.PayloadTooBig` (1009); after an error the parser stays failed.
    """

    def __init__(self, *, mask_required: bool | None = None, allowed_rsv: int = 0,
                 max_size: int | None = None) -> None:
        self.mask_required = mask_required
        self.allowed_rsv = allowed_rsv
        self.max_size = max_size
        # Unparsed bytes are _buffer[_pos:].  When everything fed so far has been parsed, the
        # next chunk becomes the buffer as it is (no copy); only a frame split across chunks
        # makes us copy into a bytearray that collects the pieces.
        self._buffer: bytes | bytearray = b""
        self._pos = 0
        self._unmasker = _fast.Unmasker()  # unmasked copies of payloads, with a reused scratch
        self._error: Exception | None = None
        # Payload bytes of the fragmented message in progress (0 between messages), so that
        # max_size bounds the whole message.
        self._fragmented = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer) - self._pos

    def feed(self, data: bytes) -> None:
        buf, pos = self._buffer, self._pos
        if pos == len(buf):  # nothing pending: adopt the new chunk without copying it
            self._buffer = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if type(buf) is not bytearray:
            buf = bytearray(memoryview(buf)[pos:])
        elif pos:
            del buf[:pos]
        buf += data
        self._buffer, self._pos = buf, 0

    def receive_data(self, data: bytes) -> list[Frame]:
        """Feed ``data`` and return every frame that is now complete (see :meth:`receive_frames`)."""
        self.feed(data)
        return self.receive_frames()

    def next_frame(self) -> Frame | _NeedData:
        """Return the next complete frame, or ``NEED_DATA`` if it has not fully arrived."""
        if self._error is not None:
            raise self._error
        buf = self._buffer
        try:
            header = self._complete_header(buf, self._pos)
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        if header is None:
            return NEED_DATA
        b0, start, end, masked = header
        self._pos = end
        masking_key = bytes(buf[start - 4:start]) if masked else None
        payload = self._unmasker.payload(buf, start, end, masking_key)  # §5.3
        opcode, fin, rsv1, rsv2, rsv3 = FIRST_BYTE[b0]
        return Frame(opcode, payload, fin, rsv1, rsv2, rsv3, masking_key)

    def receive_frames(self) -> list[Frame]:
        """Return every frame that is complete in the bytes fed so far.

        The frames are exactly those that calling :meth:`next_frame` until ``NEED_DATA`` would
        return, found by :func:`._fast.parse_frames` in passes, which is much faster for a
        chunk holding many small frames.

        If a frame is invalid, the frames before it are returned and the next call raises the
        error (this call raises it, if there are none): nothing that arrived in good order is
        lost because something bad came after it.  ``max_size`` may change between calls; the
        connection lowers it while a fragmented message grows.
        """
        if self._error is not None:
            raise self._error
        return _fast.parse_frames(self, Frame, FIRST_BYTE)

    def partial_payload(self, start: int = 0) -> tuple[int, bytes] | None:
        """The frame that has begun to arrive but is not complete: its first header byte and
        the part of its payload received so far, from offset ``start`` on, unmasked.

        ``None`` if no such frame's header is complete yet.  This is for checks that may fail a
        frame before its end (§8.1: invalid UTF-8 in a text frame); the frame itself is still
        returned whole by :meth:`receive_frames` once it has fully arrived.  Call it after
        :meth:`receive_frames` has returned everything complete.
        """
        buf, pos = self._buffer, self._pos
        header = self._parse_header(buf, pos, self.max_size)
        if header is NEED_DATA:
            return None
        b0, payload_start, _, masked = header
        begin = payload_start + start
        if begin >= len(buf):
            return b0, b""
        data = buf[begin:]
        if masked:
            # Payload byte i was masked with key byte i % 4 (§5.3): rotate the key to ``start``.
            key = bytes(buf[payload_start - 4:payload_start])
            data = apply_mask(data, key[start % 4:] + key[:start % 4])
        return b0, bytes(data)

    def _complete_header(self, buf, pos: int) -> tuple[int, int, int, bool] | None:
        """The checked header of the frame at ``buf[pos:]`` if the whole frame has arrived
        (see :meth:`_parse_header`), else ``None``.  Counts it into a fragmented message."""
        header = self._parse_header(buf, pos, self.max_size)
        if header is NEED_DATA or header[2] > len(buf):
            return None
        self._count_fragment(header[0], header[2] - header[1])
        return header

    def _count_fragment(self, b0: int, payload_len: int) -> None:
        """Keep count of the fragmented message's size, once a frame has fully arrived.

        §5.4: a fragmented message is a TEXT or BINARY frame with FIN=0, then CONT frames, the
        last with FIN=1.  (Whether the sequence is legal is the connection's business.)
        """
        opcode = b0 & 0x0F
        if opcode >= 0x8:
            return  # control frames may come between fragments; they are not part of them
        if b0 >= 0x80:  # FIN: the message is complete
            self._fragmented = 0
        elif opcode == Opcode.CONT:
            self._fragmented += payload_len
        else:
            self._fragmented = payload_len

    def _parse_header(self, buf, pos: int, limit: int | None):
        """Check the header at ``buf[pos:]``; return ``(b0, payload start, payload end, masked)``.

        ``NEED_DATA`` if the header itself is incomplete; the payload may still be incomplete
        (payload end > len(buf)).  Everything is checked as soon as the bytes that decide it
        have arrived, so an invalid frame fails fast (§5.2, §5.5).
        """
        available = len(buf) - pos
        if available < 2:
            return NEED_DATA
        b0 = buf[pos]
        b1 = buf[pos + 1]
        opcode = b0 & 0x0F
        masked = b1 >= 0x80
        payload_len = b1 & 0x7F
        if opcode not in _KNOWN_OPCODES:
            raise WebSocketProtocolError(f"reserved opcode {opcode:#x}")
        if b0 & 0x70 & ~self.allowed_rsv:
            raise WebSocketProtocolError(
                f"RSV bits {(b0 & 0x70) >> 4:03b} set without a negotiated extension")
        if self.mask_required is not None and masked != self.mask_required:
            raise WebSocketProtocolError("client frames must be masked" if self.mask_required
                                      else "server frames must not be masked")
        if opcode >= 0x8:
            if b0 < 0x80:
                raise WebSocketProtocolError("fragmented control frame")
            if payload_len > 125:
                raise WebSocketProtocolError("control frame payload longer than 125 bytes")
        start = pos + 2
        if payload_len == 126:
            if available < 4:
                return NEED_DATA
            payload_len = (buf[pos + 2] << 8) | buf[pos + 3]
            start = pos + 4
            if payload_len <= 125:
                raise WebSocketProtocolError("length not minimally encoded (16-bit form for ≤125)")
        elif payload_len == 127:
            if available < 10:
                return NEED_DATA
            (payload_len,) = struct.unpack_from("!Q", buf, pos + 2)
            start = pos + 10
            if payload_len >> 63:
                raise WebSocketProtocolError("64-bit length with the most significant bit set")
            if payload_len <= 0xFFFF:
                raise WebSocketProtocolError("length not minimally encoded (64-bit form for ≤65535)")
        # Control frames are already capped at 125 bytes; the limit bounds data frames.
        if limit is not None and opcode < 0x8:
            if opcode == Opcode.CONT and self._fragmented + payload_len > limit:
                raise PayloadTooBig(f"fragmented message exceeds the limit of {limit} bytes")
            if payload_len > limit:
                raise PayloadTooBig(f"frame of {payload_len} bytes exceeds the limit of {limit}")
        if masked:
            start += 4  # the masking key sits between the length and the payload
        return b0, start, start + payload_len, masked


# --- masking (§5.3) ----------------------------------------------------------------------------

def apply_mask(data: bytes | bytearray | memoryview, masking_key: bytes) -> bytes:
    """§5.3: XOR ``data`` with the 4-byte ``masking_key`` repeated; masking == unmasking.

    Octet i of the result is ``data[i] ^ masking_key[i % 4]``.  We never loop over bytes in
    Python: :func:`._fast.xor_mask` XORs small payloads as one big integer, large ones as numpy
    uint64 words.
    """
    return _fast.xor_mask(data, masking_key)


# --- close frame payload (§5.5.1) -----------------------------------------------------------

def encode_close_payload(code: int | None = None, reason: str = "") -> bytes:
    """A close frame's payload: empty, or a 2-byte code followed by a UTF-8 reason."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    data = struct.pack("!H", code) + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close code + reason must fit in 125 bytes")
    return data


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Decode a received close payload into ``(code, reason)``.

    An empty payload means "no status code" and reads as 1005 (§7.1.5).  A 1-byte payload, a
    code that may not be sent (§7.4) and a reason that is not UTF-8 are protocol errors.
    """
    from ..errors import InvalidUTF8  # local: keep the import list above about framing

    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise WebSocketProtocolError("close payload of 1 byte (a code takes 2)")
    (code,) = struct.unpack_from("!H", payload)
    if not is_valid_close_code(code):
        raise WebSocketProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUTF8("close reason is not valid UTF-8") from None
    return code, reason
