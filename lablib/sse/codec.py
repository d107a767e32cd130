"""The ``text/event-stream`` format, sans-I/O: bytes in -> events out, events in -> bytes out.

The authority is the WHATWG HTML standard, "Server-sent events", §9.2.5 "Parsing an event
stream" (the grammar) and §9.2.6 "Interpreting an event stream" (what each line does).  The
grammar, in short::

    stream  = [ bom ] *event *( comment / field ) eof
    event   = *( comment / field ) end-of-line          ; an empty line dispatches
    comment = ":" *any-char end-of-line
    field   = name [ ":" [ " " ] value ] end-of-line
    end-of-line = CRLF / LF / CR

On the wire, in a browser's words::

    : keepalive            <- a comment: ignored (§9.2.6)
    retry: 3000            <- reconnection time, if ASCII digits only
    event: tick            <- the event's type (default "message")
    id: 42                 <- the last event ID, sent back as Last-Event-ID on reconnection
    data: first line       <- data lines are joined with LF
    data: second line
                           <- the empty line: dispatch

Lines are split on bytes (CR and LF are single bytes in UTF-8 and never occur inside a
multi-byte sequence), then each line is decoded as UTF-8 with replacement characters, as §9.2.5
requires ("decoded using the UTF-8 decode algorithm"), so no byte sequence is an error: only a
line or an event larger than ``max_size`` is (bounded memory).
"""

from __future__ import annotations

import re

from ..errors import LocalProtocolError, PayloadTooBig
from .events import CommentReceived, Event, EventReceived, RetryReceived

__all__ = ["EventStreamParser", "encode", "encode_event", "encode_comment", "BOM",
           "MEDIA_TYPE", "DEFAULT_MAX_SIZE"]

MEDIA_TYPE = "text/event-stream"
#: U+FEFF in UTF-8: §9.2.5 allows one at the very start of the stream, and drops it.
BOM = b"\xef\xbb\xbf"
#: Largest line, and largest event (data + type + id), in bytes, before PayloadTooBig.
DEFAULT_MAX_SIZE = 1 << 20

_END_OF_LINE = re.compile(rb"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() would take "²" or "٣"


class EventStreamParser:
    """The event stream interpretation of §9.2.6, fed with bytes in chunks of any size.

    ``receive_data(chunk)`` returns the items completed by the chunk, in order:
    :class:`EventReceived` at each dispatch, :class:`RetryReceived` for a valid ``retry``,
    :class:`CommentReceived` for a comment.  The chunking never changes the result: a CR at the
    end of a chunk ends its line at once, and an LF that starts the next chunk is skipped as the
    second half of a CRLF.

    ``last_event_id`` is the event source's last event ID string (a client that resumes passes
    the one it had); ``retry`` is the last valid reconnection time in ms (None until one came).
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE, last_event_id: str = "") -> None:
        self.max_size = max_size
        self.last_event_id = last_event_id      # the event source's "last event ID string"
        self.retry: int | None = None           # the event source's "reconnection time"
        self._buffer = bytearray()              # an incomplete line
        self._offset = 0                        # stream offset of _buffer[0]
        self._at_start = True                   # may a BOM still come?
        self._skip_lf = False                   # the previous line ended with a CR
        self._failed: PayloadTooBig | None = None
        self._reset_event()
        self._id_buffer = last_event_id         # the "last event ID buffer" persists

    def _reset_event(self) -> None:
        self._data: list[str] = []              # the "data buffer", one item per data field
        self._type = ""                         # the "event type buffer"
        self._size = 0
        self._start: int | None = None          # stream offset of the event's first line

    # -- feeding ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed the next bytes of the stream; return what they completed."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        if self._at_start and not self._strip_bom():
            return []
        out: list[Event] = []
        position = 0
        for end_of_line in _END_OF_LINE.finditer(self._buffer):
            start, stop = end_of_line.span()
            if self._skip_lf and start == 0 and end_of_line.group() == b"\n":
                self._skip_lf, position = False, stop   # the LF of a CRLF split by a chunk
                continue
            self._skip_lf = end_of_line.group() == b"\r" and stop == len(self._buffer)
            self._line(bytes(self._buffer[position:start]), self._offset + position,
                       self._offset + stop, out)
            position = stop
        self._skip_lf = self._skip_lf and position == len(self._buffer)
        del self._buffer[:position]
        self._offset += position
        if len(self._buffer) > self.max_size:
            self._fail(f"event-stream line longer than {self.max_size} bytes")
        return out

    def receive_eof(self) -> list[Event]:
        """The stream ended.  §9.2.5: "any pending data must be discarded": an event without
        its final empty line, and an incomplete last line, are never dispatched."""
        self._buffer.clear()
        self._reset_event()
        return []

    @property
    def pending(self) -> int:
        """Bytes received that belong to no reported item yet (an unfinished line or event)."""
        start = self._start if self._start is not None else self._offset
        return self._offset + len(self._buffer) - start

    def _strip_bom(self) -> bool:
        """§9.2.5: one leading U+FEFF is dropped.  False while the first bytes could still be
        the start of a BOM."""
        if len(self._buffer) < len(BOM) and BOM.startswith(bytes(self._buffer)):
            return False
        if self._buffer.startswith(BOM):
            del self._buffer[:len(BOM)]
            self._offset += len(BOM)
        self._at_start = False
        return True

    def _fail(self, reason: str) -> None:
        self._failed = PayloadTooBig(reason)
        self._buffer = bytearray()   # (the old one may be under a running finditer)
        self._reset_event()
        raise self._failed

    # -- §9.2.6, one line at a time --------------------------------------------------------

    def _line(self, raw: bytes, start: int, stop: int, out: list[Event]) -> None:
        line = raw.decode("utf-8", errors="replace")
        if not line:                                   # "If the line is empty"
            self._dispatch(stop, out)
            return
        if self._start is None:
            self._start = start
        if line.startswith(":"):                       # "If the line starts with a colon"
            out.append(CommentReceived(line[1:], span=(start, stop)))
            if not self._data and not self._type:
                self._start = None                     # a comment alone is its own item
            return
        name, colon, value = line.partition(":")       # "If the line contains a colon"
        if colon and value.startswith(" "):
            value = value[1:]                          # one space after the colon is dropped
        self._field(name, value, start, stop, out)     # else: the whole line is the name

    def _field(self, name: str, value: str, start: int, stop: int, out: list[Event]) -> None:
        """§9.2.6 "process the field"."""
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)                   # value + LF, joined at dispatch
            self._size += len(value) + 1
        elif name == "id":
            if "\x00" not in value:                    # an id with NULL is ignored
                self._id_buffer = value
        elif name == "retry":
            if _DIGITS.fullmatch(value):               # only ASCII digits, else ignored
                self.retry = int(value)
                out.append(RetryReceived(self.retry, span=(start, stop)))
        # any other name is ignored
        if self._size + len(self._type) + len(self._id_buffer) > self.max_size:
            self._fail(f"event-stream event larger than {self.max_size} bytes")

    def _dispatch(self, stop: int, out: list[Event]) -> None:
        """§9.2.6 "dispatch the event", its steps numbered as in the standard."""
        start = self._start if self._start is not None else stop
        self.last_event_id = self._id_buffer           # 1. even if nothing is dispatched
        if not self._data:                             # 2. empty data buffer: nothing
            self._reset_event()
            return
        data = "\n".join(self._data)                   # 3. the trailing LF, already removed
        event = EventReceived(data, self._type or "message",  # 4.-5. type, default "message"
                              self.last_event_id, span=(start, stop))
        self._reset_event()                            # 6. clear data and type buffers
        out.append(event)                              # 7. dispatch


# --- the encoder ----------------------------------------------------------------------------

def encode(data: str | None = None, *, event: str | None = None, id: str | None = None,
           retry: int | None = None, comment: str | None = None, sep: str = "\n") -> bytes:
    """One block of fields ending with the empty line that dispatches it.

    The fields come in the order ``comment``, ``id``, ``event``, ``data``, ``retry`` (any order
    means the same to a receiver; this one is aiohttp-sse's, so the bytes can be compared).
    ``data`` is split on CRLF, LF and CR into one ``data:`` field per line (the receiver joins
    them with LF); ``data=None`` sends no data field, so nothing is dispatched (an ``id`` or a
    ``retry`` still take effect).  ``event`` and ``id`` cannot hold a line break, ``id`` no
    NULL (§9.2.6 ignores it): :class:`~lablib.errors.LocalProtocolError`.  ``sep`` is the
    line ending: ``"\n"``, ``"\r\n"`` or ``"\r"`` (§9.2.5 allows all three).
    """
    if sep not in ("\n", "\r\n", "\r"):
        raise LocalProtocolError(f"an SSE line ends with LF, CRLF or CR, not {sep!r}")
    lines: list[str] = []
    if comment is not None:
        lines += [":" + c for c in _split_lines(comment)]
    if id is not None:
        if "\x00" in id:
            raise LocalProtocolError("an SSE id cannot contain U+0000 (it would be ignored)")
        lines.append("id: " + _single(id, "id"))
    if event is not None:
        lines.append("event: " + _single(event, "event"))
    if data is not None:
        lines += ["data: " + line for line in _split_lines(data)]
    if retry is not None:
        if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
            raise LocalProtocolError(f"retry must be a non-negative integer (ms), not {retry!r}")
        lines.append(f"retry: {retry}")
    return _utf8("".join(line + sep for line in lines) + sep)


def encode_event(event: EventReceived) -> bytes:
    """The bytes of an :class:`EventReceived` (its type omitted when it is "message")."""
    return encode(event.data, event=None if event.event == "message" else event.event,
                  id=event.last_event_id or None)


def encode_comment(comment: str = "") -> bytes:
    """A comment line alone (a keepalive): ``b":" + comment + b"\\n"``; it dispatches nothing."""
    return _utf8("".join(":" + c + "\n" for c in _split_lines(comment)))


def _split_lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


def _single(value: str, name: str) -> str:
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"an SSE {name} cannot contain a line break: {value!r}")
    return value


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:   # a lone surrogate has no UTF-8 form
        raise LocalProtocolError(f"an event stream is UTF-8; cannot encode {exc.object[exc.start:exc.end]!r}") from None
