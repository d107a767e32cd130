"""Byte streams -> layered records a learner can read.

A captured TCP connection is two byte streams (client to server, "c2s", and server to client,
"s2c") that arrived in chunks whose boundaries mean nothing.  :func:`dissect` re-reads them with
lablib's own sans-I/O parsers — :class:`~lablib.http.RequestParser`,
:class:`~lablib.http.ResponseParser`, :class:`~lablib.websocket.frames.FrameParser`, and the
connection's own reassembly, :class:`~lablib.websocket.messages.MessageAssembler` (in its
tolerant mode, which reports a violation instead of failing), with permessage-deflate's
:class:`~lablib.websocket.deflate.Inflater` — so what you see here is exactly what the protocol
cores understand, not a second opinion::

    layer      kind         summary                                  spec
    tcp        open         open 127.0.0.1:50312 -> 127.0.0.1:8765
    http       request      GET /chat HTTP/1.1 [Upgrade: websocket]  RFC 9112 §3, RFC 6455 §4.1
    http       response     HTTP/1.1 101 Switching Protocols         RFC 6455 §4.2.2
    websocket  frame        TEXT fin=1 mask=1 len=5 'Hello'          RFC 6455 §5.2
    websocket  message        (fragmented or compressed: the whole message, one level deeper)
    engineio   packet         (a decoder's record, one level deeper than its carrier)
    error      truncated    stream ends inside a frame (3 bytes)     where the stream stops

Every record is a :class:`Record`: capture time, direction, layer, kind, a one-line summary,
the header fields by their spec names, and where its bytes are (``offset``/``length`` in its
direction's stream, and ``raw``).  The time of a record is the capture time of the chunk in which
its *last* byte arrived: the moment a receiver could have acted on it.  Records are ordered by
time; ties keep the dissector's order (per direction by stream offset, a request before its
response, c2s before s2c).

Nothing raises out of :func:`dissect`: a malformed or truncated stream is dissected as far as it
goes and ends with an ``error`` record saying why.

Layers above (Engine.IO, Socket.IO, ...)
----------------------------------------
Higher layers are *message decoders* (:mod:`lablib.capture.decoding` describes the interface):
each complete WebSocket message and each HTTP body is offered to them, and what they find
becomes records one level deeper.  :data:`DECODERS` (from :mod:`lablib.capture.decoders`) is
the default list; pass ``decoders=[...]`` to :func:`dissect` to choose explicitly (tests do).
A conversation whose client speaks RESP is Redis, not HTTP: :mod:`lablib.capture.resp` reads it.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import HandshakeError, LablibError
from ..http import NEED_DATA as HTTP_NEED_DATA
from ..http import Request, RequestParser, Response, ResponseParser, ResponseStream
from ..websocket.frames import (NEED_DATA as WS_NEED_DATA, CloseCode, Frame, FrameParser, Opcode,
                                parse_close_payload)
from ..websocket.deflate import DeflateParameters, Inflater
from ..websocket.handshake import accept_key
from ..websocket.messages import MessageAssembler, Reassembled
from . import resp
from .decoders import DECODERS
from .decoding import MAX_SIZE, Decoded, Decoder, Message
from .decoding import preview as _preview
from .records import Capture, Chunk, Conversation, Direction

__all__ = [
    "Record", "Message", "Decoded", "Decoder", "DECODERS", "dissect", "dissect_capture", "dissect_streams",
]

# A decoder's records may nest this deep (a guard against decoders that unwrap forever).
_MAX_DEPTH = 8


# --- the record ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Record:
    """One thing seen on the wire, at one layer.

    ``layer`` is ``"tcp"``, ``"http"``, ``"websocket"``, ``"error"`` or a decoder's layer
    (``"engineio"``, ...).  ``kind`` says what it is within the layer: ``open``/``close``/
    ``segment`` (tcp), ``request``/``response`` (http), ``frame``/``message`` (websocket),
    ``malformed``/``truncated``/``violation``/``undecoded``/``decoder`` (error).

    ``fields`` holds the protocol fields under the spec's names (see :func:`dissect`);
    ``offset``/``length`` locate the bytes in the direction's stream and ``raw`` is a copy of
    them.  ``obj`` is the parser's own object (:class:`~lablib.http.Request`,
    :class:`~lablib.websocket.frames.Frame`, an exception, ...); it is left out of ``==``.
    ``depth`` is 0 for what the stream carries directly (HTTP messages, frames), 1 for a
    reassembled message or a decoder's packet inside a frame, and so on.  ``direction`` is
    ``None`` for connection events (tcp open/close).
    """

    time: float
    direction: Direction | None
    layer: str
    kind: str
    summary: str
    fields: dict[str, Any] = field(default_factory=dict)
    offset: int = 0
    length: int = 0
    raw: bytes = b""
    obj: Any = field(default=None, compare=False)
    conversation: int | None = None
    depth: int = 0

    @property
    def end(self) -> int:
        """Stream offset just after this record's bytes."""
        return self.offset + self.length

    def __repr__(self) -> str:
        arrow = {"c2s": "->", "s2c": "<-"}.get(self.direction or "", "--")
        return (f"<Record {self.time:.6f} {arrow} {self.layer}/{self.kind} "
                f"@{self.offset}+{self.length}: {self.summary}>")


# --- public entry points ------------------------------------------------------------------------

def dissect(conversation: Conversation, *, decoders: Sequence[Decoder] | None = None,
            chunks: bool = False) -> list[Record]:
    """Dissect one TCP connection into records ordered by capture time.

    HTTP records carry ``method``, ``target``, ``http_version``, ``headers`` (list of
    ``(name, value)``), ``body`` (requests) or ``status``, ``reason``, ``http_version``,
    ``headers``, ``body`` (responses).  WebSocket frame records carry every §5.2 field: ``fin``,
    ``rsv1``, ``rsv2``, ``rsv3``, ``opcode``, ``opcode_name``, ``mask``, ``payload_len_field``
    (the 7-bit value), ``extended_payload_len``, ``payload_len``, ``masking_key``,
    ``header_len``, ``masked_payload`` (the bytes on the wire, or None if MASK=0), ``payload``
    (unmasked); close frames add ``close_code``, ``close_code_name``, ``close_reason``.

    ``chunks=True`` adds a ``tcp``/``segment`` record per captured chunk, to show that frames
    and segments do not line up.  A conversation whose ``end`` is None is still open: a message
    cut off at the end is reported ``truncated`` and a read-until-close body is not ended.
    """
    dissector = _Dissector(conversation.id, decoders)
    try:
        dissector.run(conversation, chunks=chunks)
    except Exception as exc:  # noqa: BLE001 -- a teaching tool must show what it got, not crash
        dissector.emit(None, "error", "internal", f"dissector bug: {exc!r}", {}, 0, b"", exc,
                       time=conversation.end or 0.0)
    return dissector.records()


def dissect_capture(capture: Capture, *, decoders: Sequence[Decoder] | None = None,
                    chunks: bool = False) -> list[Record]:
    """Dissect every conversation; records carry ``conversation`` (its id), ordered by time."""
    records = [r for conv in capture for r in dissect(conv, decoders=decoders, chunks=chunks)]
    return sorted(records, key=lambda r: r.time)  # stable: ties keep conversation order


def dissect_streams(c2s: bytes, s2c: bytes, *, decoders: Sequence[Decoder] | None = None,
                    eof: bool = True) -> list[Record]:
    """Dissect two raw byte streams (no capture times: every record has ``time`` 0.0).

    Records then appear in the dissector's order: the HTTP exchange, then the client's frames,
    then the server's.  There are no ``tcp`` records (no connection was seen) and
    ``conversation`` is None.  ``eof=False`` says the streams may continue (see :func:`dissect`).
    """
    conversation = Conversation(0, ("client", 0), ("server", 0),
                                [Chunk(0.0, "c2s", bytes(c2s)), Chunk(0.0, "s2c", bytes(s2c))],
                                end=0.0 if eof else None)
    return [_without_conversation(r) for r in dissect(conversation, decoders=decoders)
            if r.kind not in ("open", "close") or r.layer != "tcp"]


def _without_conversation(record: Record) -> Record:
    # Raw streams have no conversation (no id, no addresses): stand-ins would only mislead.
    return Record(record.time, record.direction, record.layer, record.kind, record.summary,
                  record.fields, record.offset, record.length, record.raw, record.obj,
                  None, record.depth)


# --- streams and times --------------------------------------------------------------------------

class _Stream:
    """One direction's bytes, a read position, and the chunk times (for record timestamps)."""

    def __init__(self, direction: Direction, chunks: list[Chunk]) -> None:
        self.direction = direction
        self.chunks = chunks
        self.data = b"".join(c.data for c in chunks)
        self.offset = 0          # everything before this has been dissected
        self.failed = False      # an error stopped dissection of this direction
        self._ends = list(itertools.accumulate(len(c.data) for c in chunks))

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def time_at(self, end: int) -> float:
        """Capture time of the chunk that carried byte ``end - 1`` (the last byte of a record)."""
        if not self.chunks:
            return 0.0
        i = bisect.bisect_left(self._ends, max(end, 1))
        return self.chunks[min(i, len(self.chunks) - 1)].time


# --- the dissector ------------------------------------------------------------------------------

class _Dissector:
    def __init__(self, conversation_id: int | None, decoders: Sequence[Decoder] | None) -> None:
        self.conversation_id = conversation_id
        self.decoders = [d.for_conversation()
                         for d in (DECODERS if decoders is None else decoders)]
        # Response media types whose body is read as it comes (Decoder.streamed_types).
        self.streamed_types = frozenset().union(*(d.streamed_types for d in self.decoders))
        self._records: list[tuple[float, int, Record]] = []
        self._seq = itertools.count()
        self.eof = False
        self.target: str | None = None  # request target of the current exchange

    def records(self) -> list[Record]:
        # Sort by time; the sequence number keeps the order of emission for ties.
        return [r for _, _, r in sorted(self._records, key=lambda t: (t[0], t[1]))]

    def emit(self, stream: _Stream | None, layer: str, kind: str, summary: str,
             fields: dict[str, Any], offset: int, raw: bytes, obj: Any = None, *,
             depth: int = 0, time: float | None = None) -> Record:
        if time is None:
            time = stream.time_at(offset + len(raw)) if stream is not None else 0.0
        record = Record(time, stream.direction if stream else None, layer, kind, summary, fields,
                        offset, len(raw), bytes(raw), obj, self.conversation_id, depth)
        self._records.append((time, next(self._seq), record))
        return record

    # -- connection ---------------------------------------------------------------------------

    def run(self, conversation: Conversation, *, chunks: bool) -> None:
        self.eof = conversation.end is not None
        c2s = _Stream("c2s", [c for c in conversation.chunks if c.direction == "c2s"])
        s2c = _Stream("s2c", [c for c in conversation.chunks if c.direction == "s2c"])
        (ch, cp), (sh, sp) = conversation.client, conversation.server
        self.emit(None, "tcp", "open", f"open {ch}:{cp} -> {sh}:{sp}",
                  {"client": conversation.client, "server": conversation.server}, 0, b"",
                  time=conversation.start)
        if chunks:
            for stream in (c2s, s2c):
                offset = 0
                for chunk in stream.chunks:
                    self.emit(stream, "tcp", "segment", f"{len(chunk.data)} bytes",
                              {"bytes": len(chunk.data)}, offset, chunk.data, chunk,
                              time=chunk.time)
                    offset += len(chunk.data)
        if resp.looks_like_resp(c2s.data, s2c.data):   # Redis, not HTTP: see lablib.capture.resp
            resp.dissect_streams(self, c2s, s2c)
        elif (upgrade := self.http(c2s, s2c)) is not None:
            for stream in (c2s, s2c):
                self.websocket(stream, upgrade)
        if self.eof:
            self.emit(None, "tcp", "close",
                      f"close ({len(c2s.data)} bytes c2s, {len(s2c.data)} bytes s2c)",
                      {"bytes_c2s": len(c2s.data), "bytes_s2c": len(s2c.data)}, 0, b"",
                      time=max(conversation.end, conversation.start))

    def error(self, stream: _Stream, kind: str, summary: str, raw: bytes | None = None,
              obj: Any = None, depth: int = 0) -> None:
        """An ``error`` record for the bytes from the current offset (default: all the rest)."""
        raw = stream.data[stream.offset:] if raw is None else raw
        self.emit(stream, "error", kind, summary, {"error": summary}, stream.offset, raw, obj,
                  depth=depth)

    # -- HTTP (RFC 9112) ------------------------------------------------------------------------

    def http(self, c2s: _Stream, s2c: _Stream) -> _Upgrade | None:
        """Pair requests and responses until the streams end or a 101 switches protocols.

        Returns the negotiated WebSocket parameters when the connection was upgraded.
        """
        while True:
            request = self.request(c2s) if c2s.remaining and not c2s.failed else None
            response = self.response(s2c, request) if s2c.remaining and not s2c.failed else None
            if request is None and response is None:
                return None
            if response is not None and response.status == 101:
                return self.switch(c2s, s2c, request, response)
            if response is None and request is not None and _is_upgrade(request) \
                    and c2s.remaining:
                self.error(c2s, "undecoded", f"{_bytes(c2s.remaining)} after an upgrade request "
                           "that got no answer")
                c2s.failed = True

    def request(self, stream: _Stream) -> Request | None:
        data = stream.data[stream.offset:]
        parser = RequestParser(max_body_size=MAX_SIZE)
        try:
            request = parser.receive_data(data)
        except HandshakeError as exc:
            return self._http_failed(stream, "malformed", exc.reason, exc)
        if request is HTTP_NEED_DATA:
            return self._http_failed(stream, "truncated",
                                     f"incomplete HTTP request ({_bytes(len(data))})", None)
        size = len(data) - len(parser.trailing_data)
        self.target = request.target
        upgrade = _is_upgrade(request)
        summary = f"{request.method} {request.target} HTTP/{request.http_version}"
        if upgrade:
            summary += f" [Upgrade: {request.headers.get('upgrade')}]"
        if request.body:
            summary += f" body={len(request.body)}B"
        fields = {"method": request.method, "target": request.target,
                  "http_version": request.http_version, "headers": request.headers.items(),
                  "body": request.body}
        self._http_message(stream, "request", summary, fields, data[:size], request)
        return request

    def response(self, stream: _Stream, request: Request | None) -> Response | None:
        data = stream.data[stream.offset:]
        incomplete = f"incomplete HTTP response ({_bytes(len(data))})"
        parser = _response_parser(request)
        try:
            response = parser.receive_data(data)
        except HandshakeError as exc:
            return self._http_failed(stream, "malformed", exc.reason, exc)
        size = len(data) - len(parser.trailing_data)
        if response is HTTP_NEED_DATA and self.eof:
            try:   # a body delimited by the end of the connection (RFC 9112 §6.3 rule 8)
                response = parser.receive_eof()
            except HandshakeError as exc:
                if self.streamed(stream, request, data):
                    return None
                return self._http_failed(stream, "truncated", incomplete, exc)
            size = len(data)
        if response is HTTP_NEED_DATA:
            if self.streamed(stream, request, data):
                return None
            return self._http_failed(stream, "truncated", incomplete, None)
        summary = f"HTTP/{response.http_version} {response.status} {response.reason}".rstrip()
        if response.body:
            summary += f" body={len(response.body)}B"
        fields = {"status": response.status, "reason": response.reason,
                  "http_version": response.http_version, "headers": response.headers.items(),
                  "body": response.body}
        if response.status == 101 and request is not None \
                and (key := request.headers.get("sec-websocket-key")) is not None:
            # RFC 6455 §4.2.2: the server proves it read the key.
            expected = accept_key(key.strip())
            fields["accept_expected"] = expected
            fields["accept_ok"] = response.headers.get("sec-websocket-accept") == expected
            if not fields["accept_ok"]:
                summary += " [wrong Sec-WebSocket-Accept]"
        self._http_message(stream, "response", summary, fields, data[:size], response)
        return response

    def streamed(self, stream: _Stream, request: Request | None, data: bytes) -> bool:
        """A response of a streamed type (:attr:`Decoder.streamed_types`) whose body has not ended: its head, the
        body so far to the decoders, then (if the connection is over) a ``truncated`` error."""
        head = ResponseStream(method=request.method if request else "GET")
        try:
            items = head.receive_data(data) + (head.receive_data(b"") if self.eof else [])
        except HandshakeError:
            return False
        response = head.response
        if response is None or response.headers.media_type() not in self.streamed_types:
            return False
        response.body = b"".join(item for item in items if isinstance(item, bytes))
        summary = (f"HTTP/{response.http_version} {response.status} {response.reason} "
                   f"body={len(response.body)}B so far, " + ("cut" if self.eof else "open"))
        fields = {"status": response.status, "reason": response.reason,
                  "http_version": response.http_version, "headers": response.headers.items(),
                  "body": response.body, "complete": False}
        record = self.emit(stream, "http", "response", summary, fields, stream.offset, data,
                           response)
        stream.offset += len(data)
        self.decode(record, Message("http", response.body, _utf8(response.body),
                                    stream.direction, self.target, response.headers, response,
                                    complete=False))
        if self.eof:
            self.emit(stream, "error", "truncated", "the connection ended inside the body",
                      {"error": "the connection ended inside the body"}, stream.offset, b"")
        stream.failed = True
        return True

    def _http_failed(self, stream: _Stream, kind: str, summary: str, exc: Exception | None):
        self.error(stream, kind, summary, obj=exc)
        stream.failed = True
        return None

    def _http_message(self, stream: _Stream, kind: str, summary: str, fields: dict[str, Any],
                      raw: bytes, obj: Request | Response) -> None:
        record = self.emit(stream, "http", kind, summary, fields, stream.offset, raw, obj)
        stream.offset += len(raw)
        if obj.body:
            text = _utf8(obj.body)
            self.decode(record, Message("http", obj.body, text, stream.direction, self.target,
                                        obj.headers, obj))

    def switch(self, c2s: _Stream, s2c: _Stream, request: Request | None,
               response: Response) -> _Upgrade | None:
        """After ``101 Switching Protocols`` both streams carry the new protocol (§4.2.2)."""
        if request is None or "websocket" not in request.headers.tokens("upgrade"):
            for stream in (c2s, s2c):
                if stream.remaining:
                    self.error(stream, "undecoded",
                               f"{_bytes(stream.remaining)} of an upgraded protocol other than "
                               "WebSocket")
            return None
        return _Upgrade.from_response(response)

    # -- WebSocket (RFC 6455 §5) ---------------------------------------------------------------

    def websocket(self, stream: _Stream, upgrade: _Upgrade) -> None:
        """Every frame of one direction, then an error record if the stream stops early."""
        # mask_required=None: accept both, so that a wrongly (un)masked frame is shown and
        # flagged below instead of ending the dissection.
        parser = FrameParser(mask_required=None, allowed_rsv=upgrade.allowed_rsv)
        parser.feed(stream.data[stream.offset:])
        # tolerant: a fragmentation or UTF-8 violation is reported with its message, and the
        # dissection goes on.
        messages = MessageAssembler(tolerant=True, inflater=upgrade.inflater(stream.direction))
        first_offset = 0  # where the message being reassembled began
        while True:
            try:
                frame = parser.next_frame()
            except LablibError as exc:
                self.error(stream, "malformed", f"malformed frame: {exc}", obj=exc)
                return
            if frame is WS_NEED_DATA:
                if parser.buffered:
                    self.error(stream, "truncated",
                               f"stream ends inside a frame ({_bytes(parser.buffered)})")
                return
            size = frame.header_len + frame.payload_len
            raw = stream.data[stream.offset:stream.offset + size]
            record = self.frame(stream, frame, raw, messages.continues_compressed(frame))
            stream.offset += size
            self.check_mask(stream, frame, record)
            if frame.opcode.is_control:
                continue
            if frame.opcode is not Opcode.CONT:
                first_offset = record.offset
            self.message(stream, record, messages.receive(frame), first_offset)

    def frame(self, stream: _Stream, frame: Frame, raw: bytes, compressed: bool) -> Record:
        fields = _frame_fields(frame, raw)
        summary = _frame_summary(frame, fields, compressed)
        return self.emit(stream, "websocket", "frame", summary, fields, stream.offset, raw, frame)

    def check_mask(self, stream: _Stream, frame: Frame, record: Record) -> None:
        """§5.1: a client masks every frame, a server none."""
        if frame.mask != (stream.direction == "c2s"):
            problem = ("a client frame must be masked (§5.1)" if stream.direction == "c2s"
                       else "a server frame must not be masked (§5.1)")
            self.emit(stream, "error", "violation", problem, {"error": problem},
                      record.offset, record.raw, frame)

    def message(self, stream: _Stream, record: Record, done: Reassembled | None,
                first: int) -> None:
        """Report a completed message (when it adds something) and hand it to the decoders;
        ``first`` is where its first frame began."""
        if done is None:
            return
        if done.violation is not None:
            self.emit(stream, "error", "violation", done.violation, {"error": done.violation},
                      record.offset, record.raw, record.obj)
            if done.data is None:
                return
        carrier, depth = record, 0
        if done.frames > 1 or done.compressed:
            raw = stream.data[first:record.end]
            how = [f"{done.frames} frames"] if done.frames > 1 else []
            if done.compressed:
                how.append(f"inflated {done.wire_length}->{len(done.data)} bytes")
            else:
                how.append(f"{len(done.data)} bytes")
            preview = _preview(done.data, done.text)
            summary = f"{done.opcode.name} message, {', '.join(how)}: {preview}"
            fields = {"opcode": int(done.opcode), "opcode_name": done.opcode.name,
                      "frames": done.frames, "compressed": done.compressed,
                      "data": done.data, "text": done.text}
            carrier = self.emit(stream, "websocket", "message", summary, fields, first, raw,
                                done, depth=1)
            depth = 1
        self.decode(carrier, Message("websocket", done.data, done.text, stream.direction,
                                     self.target, None, done), depth=depth)

    # -- decoders ----------------------------------------------------------------------------

    def decode(self, carrier: Record, message: Message, depth: int | None = None) -> None:
        """Offer ``message`` to every decoder of its carrier; records nest one level deeper."""
        depth = carrier.depth if depth is None else depth
        if depth >= _MAX_DEPTH:
            return
        for decoder in self.decoders:
            if message.carrier not in decoder.carriers:
                continue
            try:
                items = decoder.decode(message) or []
            except Exception as exc:  # noqa: BLE001 -- a decoder's bug becomes a record
                self._child(carrier, "error", "decoder", f"{decoder.name} decoder failed: {exc!r}",
                            {"error": repr(exc), "decoder": decoder.name}, None, exc, depth + 1)
                continue
            for item in items:
                child = self._child(carrier, item.layer, item.kind, item.summary, item.fields,
                                    item.raw, item.obj, depth + 1)
                if item.inner is not None:
                    self.decode(child, item.inner)

    def _child(self, carrier: Record, layer: str, kind: str, summary: str, fields: dict,
               raw: bytes | None, obj: Any, depth: int) -> Record:
        # A child shares its carrier's time and place in the stream; raw narrows it if given.
        record = Record(carrier.time, carrier.direction, layer, kind, summary, dict(fields),
                        carrier.offset, carrier.length, carrier.raw if raw is None else bytes(raw),
                        obj, carrier.conversation, depth)
        self._records.append((record.time, next(self._seq), record))
        return record


# --- WebSocket helpers --------------------------------------------------------------------------

def _frame_fields(frame: Frame, raw: bytes) -> dict[str, Any]:
    """The §5.2 fields of a frame, read from the parsed Frame and its wire bytes."""
    length_field = raw[1] & 0x7F
    fields: dict[str, Any] = {
        "fin": int(frame.fin), "rsv1": int(frame.rsv1), "rsv2": int(frame.rsv2),
        "rsv3": int(frame.rsv3), "opcode": int(frame.opcode), "opcode_name": frame.opcode.name,
        "mask": int(frame.mask), "payload_len_field": length_field,
        "extended_payload_len": frame.payload_len if length_field >= 126 else None,
        "payload_len": frame.payload_len, "masking_key": frame.masking_key,
        "header_len": frame.header_len,
        "masked_payload": raw[frame.header_len:] if frame.mask else None,
        "payload": frame.payload,
    }
    if frame.opcode == Opcode.CLOSE:
        try:
            code, reason = parse_close_payload(frame.payload)
        except LablibError as exc:
            fields["close_error"] = str(exc)
        else:
            fields["close_code"] = int(code)
            fields["close_code_name"] = _close_name(code)
            fields["close_reason"] = reason
    return fields


def _close_name(code: int) -> str:
    try:
        return CloseCode(code).name
    except ValueError:
        return "application" if code >= 4000 else "library" if code >= 3000 else "unknown"


def _frame_summary(frame: Frame, fields: dict[str, Any], compressed: bool = False) -> str:
    """One line: opcode, the flags, the length, and a glimpse of the payload.

    ``compressed``: the frame continues a compressed message (RFC 7692 §6.1: only the first
    frame carries RSV1, but every fragment holds deflated bytes).
    """
    rsv = "".join(f" rsv{i}=1" for i in (1, 2, 3) if fields[f"rsv{i}"])
    head = (f"{frame.opcode.name} fin={fields['fin']}{rsv} mask={fields['mask']} "
            f"len={frame.payload_len}")
    if frame.opcode == Opcode.CLOSE:
        if "close_code" in fields:
            tail = f"{fields['close_code']} {fields['close_code_name']}"
            if fields["close_reason"]:
                tail += f" {fields['close_reason']!r}"
        else:
            tail = f"bad close payload: {fields['close_error']}"
        return f"{head} {tail}"
    if (frame.rsv1 or compressed) and frame.opcode.is_data:
        return f"{head} (compressed)"
    if not frame.payload:
        return head
    text = _utf8(frame.payload) if frame.opcode == Opcode.TEXT and frame.fin else None
    return f"{head} {_preview(frame.payload, text)}"


def _bytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n} bytes"


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class _Upgrade:
    """What the 101 response negotiated that the frame dissector must know."""

    deflate: DeflateParameters | None = None   # RFC 7692 permessage-deflate, if agreed

    @classmethod
    def from_response(cls, response: Response) -> _Upgrade:
        return cls(DeflateParameters.from_headers(
            response.headers.get_all("sec-websocket-extensions")))

    @property
    def allowed_rsv(self) -> int:
        return 0x40 if self.deflate else 0  # RFC 7692 §6: permessage-deflate owns RSV1

    def inflater(self, direction: Direction) -> Inflater | None:
        if self.deflate is None:
            return None
        return self.deflate.inflater(sender_is_client=direction == "c2s", max_size=MAX_SIZE)


# --- HTTP helpers -------------------------------------------------------------------------------

def _is_upgrade(request: Request) -> bool:
    return "upgrade" in request.headers.tokens("connection") and "upgrade" in request.headers


def _response_parser(request: Request | None) -> ResponseParser:
    """A parser primed with the request the response answers.

    h11 needs the method (a HEAD response has no body) and the Upgrade proposal (a 101 is
    only legal in answer to one); the rest of the request does not matter here.
    """
    if request is None:
        return ResponseParser(method="GET")
    keep = [(k, v) for k, v in request.headers.items() if k.lower() in ("upgrade", "connection")]
    host = request.headers.get("host") or "unknown"
    try:
        return ResponseParser(method=request.method, target=request.target,
                              headers=[("Host", host)] + keep)
    except Exception:  # noqa: BLE001 -- h11 refused to "send" the request: parse without it
        return ResponseParser(method=request.method)
