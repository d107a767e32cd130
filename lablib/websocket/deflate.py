"""RFC 7692 — the permessage-deflate extension: negotiation (§5, §7.1) and the payload (§6, §7.2).

This is the one place where permessage-deflate lives: the connection uses it to negotiate and
to compress and inflate messages, the dissector to read captures of connections that agreed it.

The wire, in three facts::

    GET ... Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits      (offer, §5)
    101 ... Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12;
                                      client_max_window_bits=12                       (answer, §5)
    frame:  FIN RSV1=1 TEXT  <DEFLATE data without its final 00 00 ff ff>             (§6, §7.2.1)

§6: a compressed message has RSV1 (the "Per-Message Compressed" bit) set on its *first* frame
only; control frames are never compressed.  §7.2.1: the sender compresses the message's
payload (all its fragments together) into DEFLATE blocks, ends it with an empty stored block
(zlib's ``Z_SYNC_FLUSH`` writes ``00 00 ff ff`` last) and removes those 4 octets.  §7.2.2: the
receiver appends them again and inflates.  A fragmented message is compressed fragment by
fragment: each frame's payload is what the compressor produced for that fragment.

Context takeover (§7.1.1): by default each side keeps its LZ77 window from one message to the
next (the second "Hello" costs 5 bytes instead of 7), so there is one compressor per direction
for the whole connection and one decompressor on the other side.  ``server_no_context_takeover``
/ ``client_no_context_takeover`` make that side start every message with an empty window.
``*_max_window_bits`` (§7.1.2) bound the window a side compresses with: 2**bits bytes, 8-15.

Negotiation, in one table per parameter (the offer is the client's, the answer the server's)::

    parameter                   in the offer means                 in the answer means
    server_no_context_takeover  "server, please reset"             the server will reset (MUST
                                                                   be there if offered)
    client_no_context_takeover  "I (client) will reset" (a hint)   the client MUST reset
    server_max_window_bits=N    "server, use at most 2**N"         the server uses <= 2**N (MUST
                                                                   be there, <= N, if offered)
    client_max_window_bits[=N]  "I can limit my window" (=N: and   the client uses <= 2**M (only
                                I will use at most 2**N)           if the offer had it; M <= N)

:class:`DeflateOptions` is what one side wants (``compression=`` of the client and the server,
mirroring ``websockets``); :meth:`DeflateOptions.offer` / :meth:`DeflateOptions.accept_offer`
/ :meth:`DeflateOptions.accept_response` apply the tables; the result is a
:class:`DeflateParameters`, which makes one :class:`Deflater` (what we send) and one
:class:`Inflater` (what we receive).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from ..errors import HandshakeError, PayloadTooBig, WebSocketProtocolError

__all__ = [
    "TAIL", "EXTENSION", "DeflateOptions", "DeflateParameters", "Deflater", "Inflater",
    "parse_extensions", "format_extension", "compression_options",
]

#: The empty stored block a sender removes from the end of each compressed message (§7.2.1).
TAIL = b"\x00\x00\xff\xff"

#: The extension's name in ``Sec-WebSocket-Extensions`` (§7).
EXTENSION = "permessage-deflate"

#: §7.1.2: a window of 2**8 to 2**15 bytes.
WINDOW_BITS = range(8, 16)

#: RFC 6455 §7.4.1 has no code for "this is not DEFLATE data"; we send 1007 (see Inflater).
INVALID_DATA = 1007

Param = tuple[str, str | None]


# --- Sec-WebSocket-Extensions (RFC 6455 §9.1) ----------------------------------------------------

# extension-list = 1#extension;  extension = token *( ";" param );  param = token [ "=" value ]
# where value is a token or a quoted-string whose content is a token.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})(?:\s*=\s*(?:({_TOKEN})|\"((?:[^\"\\]|\\.)*)\"))?")
_NAME = re.compile(rf"\s*({_TOKEN})")
_TOKEN_ONLY = re.compile(rf"{_TOKEN}\Z")


def parse_extensions(values: Iterable[str]) -> list[tuple[str, list[Param]]]:
    """The extensions of one or more ``Sec-WebSocket-Extensions`` values, in order.

    >>> parse_extensions(['permessage-deflate; client_max_window_bits, x-foo; a="1"'])
    [('permessage-deflate', [('client_max_window_bits', None)]), ('x-foo', [('a', '1')])]

    Names are lower-cased; a quoted value is unquoted (RFC 6455 §9.1: it must then be a token).
    Raises ``ValueError`` when a value does not follow the grammar.
    """
    extensions = []
    for value in values:
        pos = 0
        while value[pos:].strip():
            if (match := _NAME.match(value, pos)) is None:
                raise ValueError(f"expected an extension name at {value[pos:]!r}")
            name, params, pos = match.group(1).lower(), [], match.end()
            while (match := _PARAM.match(value, pos)) is not None:
                param, token, quoted = match.groups()
                if quoted is not None:
                    token = re.sub(r"\\(.)", r"\1", quoted)
                    if not _TOKEN_ONLY.match(token):
                        raise ValueError(f"quoted value {quoted!r} is not a token")
                params.append((param.lower(), token))
                pos = match.end()
            rest = value[pos:].lstrip()
            if rest and not rest.startswith(","):
                raise ValueError(f"unexpected {rest!r} in {value!r}")
            pos = len(value) - len(rest) + 1  # past the comma
            extensions.append((name, params))
    return extensions


def format_extension(name: str, params: Sequence[Param]) -> str:
    """``name; a; b=1``: one extension for a ``Sec-WebSocket-Extensions`` field."""
    return "; ".join([name] + [p if v is None else f"{p}={v}" for p, v in params])


# --- what was agreed -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeflateParameters:
    """What the opening handshake agreed: for each direction, whether its sender resets its
    window for every message (§7.1.1) and the window size it compresses with (§7.1.2, 8-15;
    15 when the answer did not limit it).

    ``level`` and ``mem_level`` are *our* compressor's zlib settings: not negotiated, not on the
    wire, and left out of ``==``.
    """

    client_no_context_takeover: bool = False  #: §7.1.1.2: the client resets its window per message
    server_no_context_takeover: bool = False  #: §7.1.1.1: the server does
    server_max_window_bits: int = 15          #: §7.1.2.1: the server's window is 2**this bytes
    client_max_window_bits: int = 15          #: §7.1.2.2: the client's
    level: int = field(default=zlib.Z_DEFAULT_COMPRESSION, compare=False)
    mem_level: int = field(default=5, compare=False)

    @classmethod
    def from_headers(cls, values: list[str]) -> DeflateParameters | None:
        """The parameters of ``permessage-deflate`` in a 101 response's extension header
        values, or ``None`` if the server did not accept it.  Lenient (for the dissector): a
        parameter that is not valid is ignored, as if absent."""
        try:
            extensions = parse_extensions(values)
        except ValueError:
            extensions = [(v.split(";")[0].strip().lower(), []) for v in values]
        for name, params in extensions:
            if name == EXTENSION:
                agreed = cls()
                for param, value in params:
                    try:
                        agreed = _apply(agreed, *_check_param(param, value, in_offer=False))
                    except ValueError:
                        pass
                return agreed
        return None

    def no_context_takeover(self, sender_is_client: bool) -> bool:
        return self.client_no_context_takeover if sender_is_client else self.server_no_context_takeover

    def window_bits(self, sender_is_client: bool) -> int:
        return self.client_max_window_bits if sender_is_client else self.server_max_window_bits

    def deflater(self, sender_is_client: bool) -> Deflater:
        """The compressor for the messages one side sends (§7.2.1)."""
        return Deflater(window_bits=self.window_bits(sender_is_client),
                        no_context_takeover=self.no_context_takeover(sender_is_client),
                        level=self.level, mem_level=self.mem_level)

    def inflater(self, sender_is_client: bool, max_size: int | None = None) -> Inflater:
        """The decompressor for the messages one side sends (§7.2.2)."""
        return Inflater(window_bits=self.window_bits(sender_is_client),
                        no_context_takeover=self.no_context_takeover(sender_is_client),
                        max_size=max_size)


def _check_param(name: str, value: str | None, *, in_offer: bool) -> tuple[str, bool | int]:
    """§7.1: one parameter, checked; returns (name, True or the window bits).

    Raises ``ValueError`` for a name §7.1 does not define, a value where none is allowed, or
    window bits that are not a decimal integer from 8 to 15 (no leading zero, §7.1.2).
    ``client_max_window_bits`` may come without a value in an offer only (§7.1.2.2).
    """
    if name in ("server_no_context_takeover", "client_no_context_takeover"):
        if value is not None:
            raise ValueError(f"{name} takes no value (got {value!r})")
        return name, True
    if name in ("server_max_window_bits", "client_max_window_bits"):
        if value is None and name == "client_max_window_bits" and in_offer:
            return name, True
        if value is None or not re.fullmatch(r"[1-9][0-9]?", value) or int(value) not in WINDOW_BITS:
            raise ValueError(f"{name} must be 8 to 15 (got {value!r})")
        return name, int(value)
    raise ValueError(f"unknown parameter {name!r}")


def _params(params: Sequence[Param], *, in_offer: bool) -> dict[str, bool | int]:
    """§7.1: the parameters of one offer or answer, each checked, none twice."""
    checked: dict[str, bool | int] = {}
    for name, value in params:
        name, parsed = _check_param(name, value, in_offer=in_offer)
        if name in checked:
            raise ValueError(f"{name} appears twice")
        checked[name] = parsed
    return checked


def _apply(agreed: DeflateParameters, name: str, value: bool | int) -> DeflateParameters:
    if value is True and name.endswith("window_bits"):
        return agreed  # a value-less client_max_window_bits limits nothing
    return replace(agreed, **{name: value})


# --- what one side wants ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """permessage-deflate settings of a client or a server (``compression=`` of
    :func:`~lablib.websocket.connect` and :func:`~lablib.websocket.serve`).

    The four parameters mean what §7.1 says (see the module's table).  On a **client** they
    are the offer: ``client_max_window_bits=True`` offers the parameter without a value ("I
    can limit my window; you choose"), an int also promises that limit.  On a **server** they
    are requirements: ``*_no_context_takeover=True`` asks for it in every answer,
    ``*_max_window_bits=N`` caps what the client's offer may get.

    ``level`` and ``mem_level`` tune our zlib compressor (not negotiated).  The defaults of
    :meth:`for_client` and :meth:`for_server` are ``websockets``' (``compression="deflate"``):
    a client offers ``client_max_window_bits`` without a value; a server limits both windows
    to 2**12 bytes; both compress with zlib's default level and ``memLevel=5``, so that both
    libraries put the same bytes on the wire for the same settings.  Window 8 cannot be used
    to compress (zlib refuses raw streams with 2**8 windows): a server never agrees to
    compress with it, a client never asks to.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = None
    level: int = zlib.Z_DEFAULT_COMPRESSION
    mem_level: int = 5

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if bits is not None and bits is not True and bits not in WINDOW_BITS:
                raise ValueError(f"{name} must be 8 to 15 (or None)")
        if self.client_max_window_bits is False:
            raise ValueError("client_max_window_bits: None (not offered), True or 8 to 15")

    @classmethod
    def for_client(cls) -> DeflateOptions:
        """``websockets``' client default: ``permessage-deflate; client_max_window_bits``."""
        return cls(client_max_window_bits=True)

    @classmethod
    def for_server(cls) -> DeflateOptions:
        """``websockets``' server default: both windows at most 2**12 bytes."""
        return cls(server_max_window_bits=12, client_max_window_bits=12)

    # -- the client ---------------------------------------------------------------------------

    def offer(self) -> str:
        """The client's offer: the value of its ``Sec-WebSocket-Extensions`` field (§5)."""
        if self.client_max_window_bits == 8:
            raise ValueError("client_max_window_bits=8: zlib cannot compress with a 256-byte "
                             "window (use 9)")
        return format_extension(EXTENSION, self._wanted(self.client_max_window_bits))

    def accept_response(self, values: list[str]) -> DeflateParameters | None:
        """The client checks the server's answer to :meth:`offer` (§5, §7.1).

        ``values`` are the 101 response's ``Sec-WebSocket-Extensions`` values.  Returns the
        agreed parameters, or ``None`` if the server declined (no extension in its answer).
        Raises :class:`~lablib.errors.HandshakeError` if the answer is one the client MUST
        fail the connection for (RFC 6455 §4.1, RFC 7692 §7.1).
        """
        try:
            extensions = parse_extensions(values)
        except ValueError as exc:
            raise _refused(f"unreadable Sec-WebSocket-Extensions: {exc}") from None
        if not extensions:
            return None
        if len(extensions) > 1 or extensions[0][0] != EXTENSION:
            names = ", ".join(name for name, _ in extensions)
            raise _refused(f"server selected extensions we did not offer: {names}")
        try:
            answer = _params(extensions[0][1], in_offer=False)
        except ValueError as exc:
            raise _refused(f"invalid permessage-deflate answer: {exc}") from None
        if self.server_no_context_takeover and "server_no_context_takeover" not in answer:
            raise _refused("server_no_context_takeover was asked for and not agreed (§7.1.1.1)")
        server_bits = answer.get("server_max_window_bits")
        if self.server_max_window_bits is not None and (
                server_bits is None or server_bits > self.server_max_window_bits):
            raise _refused(f"server_max_window_bits={self.server_max_window_bits} was asked for; "
                           f"the answer has {server_bits} (§7.1.2.1)")
        client_bits = answer.get("client_max_window_bits")
        if client_bits is not None:
            if self.client_max_window_bits is None:
                raise _refused("client_max_window_bits in the answer, not in the offer (§7.1.2.2)")
            if self.client_max_window_bits is not True and client_bits > self.client_max_window_bits:
                raise _refused(f"client_max_window_bits={client_bits} exceeds our offer of "
                               f"{self.client_max_window_bits} (§7.1.2.2)")
            if client_bits == 8:
                raise _refused("client_max_window_bits=8: zlib cannot compress with it")
        elif self.client_max_window_bits not in (None, True):
            client_bits = self.client_max_window_bits  # we promised that limit: keep it
        return DeflateParameters(
            client_no_context_takeover=self.client_no_context_takeover
            or "client_no_context_takeover" in answer,
            server_no_context_takeover="server_no_context_takeover" in answer,
            server_max_window_bits=server_bits or 15, client_max_window_bits=client_bits or 15,
            level=self.level, mem_level=self.mem_level)

    # -- the server ---------------------------------------------------------------------------

    def accept_offer(self, values: list[str]) -> tuple[str, DeflateParameters] | None:
        """The server's answer to the client's offers (``Sec-WebSocket-Extensions`` values).

        The client lists its offers in order of preference (§5); the first acceptable
        ``permessage-deflate`` offer wins.  An offer is declined, never answered with an
        error, when a parameter is unknown, repeated or has a bad value (§7.1), or when it
        asks for ``server_max_window_bits=8`` (zlib cannot compress with it).  Returns the
        answer (the value of our ``Sec-WebSocket-Extensions`` field) and the agreed
        parameters, or ``None``: no compression.
        """
        try:
            extensions = parse_extensions(values)
        except ValueError:
            return None  # nothing we can read is an offer we can accept
        for name, params in extensions:
            if name != EXTENSION:
                continue  # an extension we do not implement: not ours to answer
            try:
                return self._answer(_params(params, in_offer=True))
            except ValueError:
                continue
        return None

    def _answer(self, offer: dict[str, bool | int]) -> tuple[str, DeflateParameters]:
        """One valid offer -> (our answer, the agreed parameters); ValueError: decline it."""
        server_bits = offer.get("server_max_window_bits")
        if self.server_max_window_bits is not None:  # our cap; the answer may lower an offer
            server_bits = min(server_bits or 15, self.server_max_window_bits)
        if server_bits == 8:
            raise ValueError("server_max_window_bits=8: zlib cannot compress with it")
        client_bits = offer.get("client_max_window_bits")
        if client_bits is True:  # "I can limit it": to our cap, or not at all
            client_bits = self.client_max_window_bits
        elif client_bits is not None and self.client_max_window_bits is not None:
            client_bits = min(client_bits, self.client_max_window_bits)
        # (no client_max_window_bits in the offer: the answer MUST NOT have one, §7.1.2.2)
        agreed = DeflateParameters(
            client_no_context_takeover=self.client_no_context_takeover
            or "client_no_context_takeover" in offer,
            server_no_context_takeover=self.server_no_context_takeover
            or "server_no_context_takeover" in offer,
            server_max_window_bits=server_bits or 15, client_max_window_bits=client_bits or 15,
            level=self.level, mem_level=self.mem_level)
        answer: list[Param] = []
        if agreed.server_no_context_takeover:
            answer.append(("server_no_context_takeover", None))
        if agreed.client_no_context_takeover:
            answer.append(("client_no_context_takeover", None))
        if server_bits is not None:
            answer.append(("server_max_window_bits", str(server_bits)))
        if client_bits is not None:
            answer.append(("client_max_window_bits", str(client_bits)))
        return format_extension(EXTENSION, answer), agreed

    def _wanted(self, client_bits: int | bool | None) -> list[Param]:
        params: list[Param] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if client_bits is True:
            params.append(("client_max_window_bits", None))
        elif client_bits is not None:
            params.append(("client_max_window_bits", str(client_bits)))
        return params


def _refused(reason: str) -> HandshakeError:
    return HandshakeError(101, f"permessage-deflate: {reason}")


def compression_options(compression: str | DeflateOptions | None, *,
                        client: bool) -> DeflateOptions | None:
    """``compression=`` of a client or a server: ``"deflate"`` (the defaults of
    :meth:`DeflateOptions.for_client` / :meth:`~DeflateOptions.for_server`), a
    :class:`DeflateOptions`, or ``None`` (no compression)."""
    if compression is None or isinstance(compression, DeflateOptions):
        return compression
    if compression == "deflate":
        return DeflateOptions.for_client() if client else DeflateOptions.for_server()
    raise ValueError(f"unsupported compression {compression!r}: 'deflate', a DeflateOptions "
                     "or None")


# --- the payload (§7.2) ----------------------------------------------------------------------

class Deflater:
    """§7.2.1: compress one direction's messages, a frame's payload at a time.

    Each fragment is compressed and flushed with ``Z_SYNC_FLUSH``, so that the frame holds
    everything the receiver needs to inflate it; the message's last frame loses the 4-octet
    ``00 00 ff ff`` that flush ends with.

    >>> Deflater().deflate(b"Hello", fin=True).hex()  # RFC 7692 §7.2.3.1
    'f248cdc9c90700'
    """

    def __init__(self, *, window_bits: int = 15, no_context_takeover: bool = False,
                 level: int = zlib.Z_DEFAULT_COMPRESSION, mem_level: int = 5) -> None:
        if window_bits == 8:
            raise ValueError("zlib cannot compress with a 2**8-byte window (madler/zlib#171)")
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self.level, self.mem_level = level, mem_level
        self._z: zlib._Compress | None = None
        self._starting = True  # the next payload begins a message

    def deflate(self, data: bytes, *, fin: bool) -> bytes:
        """The compressed payload of one frame; ``fin``: the message's last frame."""
        if self._z is None or (self._starting and self.no_context_takeover):
            self._z = zlib.compressobj(self.level, zlib.DEFLATED, -self.window_bits,
                                       self.mem_level)
        self._starting = fin
        out = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            out = out[:-len(TAIL)]  # a sync flush always ends with the empty stored block
            if self.no_context_takeover:
                self._z = None  # the next message starts a fresh window: free this one now
        return out


class Inflater:
    """§7.2.2: inflate one direction's compressed messages, a frame's payload at a time.

    ``max_size`` bounds one inflated message: zlib is never asked for more than the room
    left (plus one byte, to tell "too big" from "exactly full"), so a few kilobytes that
    would inflate to gigabytes cost at most ``max_size`` bytes of memory before they fail.
    Errors raise :class:`~lablib.errors.PayloadTooBig` (close code 1009) or
    :class:`~lablib.errors.WebSocketProtocolError` with code 1007 when the data is not DEFLATE:
    RFC 7692 names no code for it; RFC 6455 §7.4.1 gives 1007 to "data within a message
    that was not consistent with the type of the message", and RSV1 typed this message as
    DEFLATE data (Node's ``ws`` and ``wsproto`` send 1007 too; ``websockets`` sends 1002).
    """

    def __init__(self, *, window_bits: int = 15, no_context_takeover: bool = False,
                 max_size: int | None = None) -> None:
        # A 2**8 window is inflated with 2**9: zlib compresses "8" with a 9-bit window, and a
        # larger window reads any stream a smaller one wrote.
        self.window_bits = max(window_bits, 9)
        self.no_context_takeover = no_context_takeover
        self.max_size = max_size
        self._z = zlib.decompressobj(-self.window_bits)
        self._size = 0        # bytes inflated so far of the current message
        self._starting = True  # the next payload begins a message

    def inflate(self, data: bytes, *, fin: bool) -> bytes:
        """The inflated bytes of one frame's payload; ``fin``: the message's last frame.

        After an error the message is lost: the next call begins a new one.
        """
        if self._starting and (self.no_context_takeover or self._z.eof):
            # (eof: the sender ended its stream with a BFINAL block, §7.2.3.4: start anew)
            self._z = zlib.decompressobj(-self.window_bits)
        self._starting = False
        if fin:
            data += TAIL
        try:
            if self.max_size is None:
                out = self._z.decompress(data)
            else:
                room = self.max_size - self._size
                out = self._z.decompress(data, room + 1)
                if len(out) > room:
                    raise PayloadTooBig(f"permessage-deflate: the message inflates beyond "
                                        f"{self.max_size} bytes")
        except zlib.error as exc:
            self._end_message()
            raise WebSocketProtocolError(f"permessage-deflate: cannot inflate ({exc})",
                                      INVALID_DATA) from None
        except PayloadTooBig:
            self._end_message()
            raise
        self._size += len(out)
        if fin:
            self._end_message()
        return out

    def _end_message(self) -> None:
        self._size = 0
        self._starting = True
