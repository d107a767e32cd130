"""RFC 6455 §5.4 and §8.1: frames -> messages.

A message is one data frame with FIN=1, or a TEXT or BINARY frame with FIN=0 followed by
CONT frames, the last with FIN=1; control frames may come between the fragments (§5.4).  A
text message must be valid UTF-8 (§8.1), checked as the fragments arrive so that a bad one
fails at once.  A compressed message (RFC 7692: RSV1 on its first frame) is inflated fragment
by fragment before that check, when an :class:`~lablib.websocket.deflate.Inflater` is given.

:class:`MessageAssembler` does this for the :class:`~lablib.websocket.connection.Connection`
(strict: a violation raises, and the connection fails with its close code) and for the
dissector (``tolerant=True``: a violation is reported with the message and reassembly goes
on, so that a capture is shown as far as it goes).  There is one reassembly, not two.
"""

from __future__ import annotations

import codecs
from typing import NamedTuple

from ..errors import InvalidUTF8, RemoteProtocolError, WebSocketProtocolError
from .deflate import Inflater
from .frames import Frame, Opcode

__all__ = ["Reassembled", "MessageAssembler"]


class Reassembled(NamedTuple):
    """A complete data message, all its fragments joined (a named tuple: built per message)."""

    opcode: Opcode                #: TEXT or BINARY (CONT: a tolerant report of a stray fragment)
    data: bytes | None            #: the payload, inflated if compressed; None if lost (tolerant)
    text: str | None = None       #: TEXT: ``data`` decoded; None if BINARY, or not UTF-8 (tolerant)
    frames: int = 1               #: how many data frames carried it
    compressed: bool = False      #: RSV1 was set on its first frame (RFC 7692 §6)
    wire_length: int = 0          #: payload bytes on the wire (before inflating)
    violation: str | None = None  #: tolerant mode: what §5.4 / §8.1 / RFC 7692 forbid, if any


class MessageAssembler:
    """Join data frames into messages (§5.4), checking text as it arrives (§8.1).

    Feed it every data frame with :meth:`receive` (control frames are not its business); it
    returns the message a frame completes, or ``None``.  Strict (the default): a violation
    raises :class:`~lablib.errors.WebSocketProtocolError` or :class:`~lablib.errors.InvalidUTF8`.
    ``tolerant=True``: nothing raises; the first violation is reported in the message's
    ``violation`` (a continuation frame with no message to continue is reported alone, as a
    ``Reassembled`` with opcode CONT and no data).  ``inflater`` inflates compressed messages
    (RFC 7692: the connection sets it when permessage-deflate is agreed).
    """

    __slots__ = ("tolerant", "inflater", "_opcode", "_parts", "_frames", "_wire_length",
                 "_compressed", "_violation", "_text_valid", "_utf8", "_partial_utf8")

    def __init__(self, *, tolerant: bool = False, inflater: Inflater | None = None) -> None:
        self.tolerant = tolerant
        self.inflater = inflater
        self._opcode: Opcode | None = None  # the fragmented message in progress, if any
        self._parts: list[bytes] | None = []  # None: a compressed message that is lost
        self._frames = 0
        self._wire_length = 0
        self._compressed = False
        self._violation: str | None = None
        self._text_valid = True
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        # §8.1 fail fast: the text frame still arriving, checked as its bytes come.
        self._partial_utf8 = codecs.getincrementaldecoder("utf-8")("strict")

    def continues_compressed(self, frame: Frame) -> bool:
        """Is ``frame`` a continuation of a compressed message (RSV1 only on the first frame)?"""
        return frame.opcode is Opcode.CONT and self._opcode is not None and self._compressed

    def receive(self, frame: Frame) -> Reassembled | None:
        """Add a data frame; return the message it completes, or None."""
        if frame.opcode is Opcode.CONT:
            if self._opcode is None:
                violation = self._fail(
                    WebSocketProtocolError("continuation frame without a message to continue"),
                    "continuation frame without a message to continue (§5.4)")
                return Reassembled(Opcode.CONT, None, None, 1, False, len(frame.payload),
                                   violation)
            if frame.rsv1:
                violation = self._fail(
                    WebSocketProtocolError("RSV1 set on a continuation frame (RFC 7692 §6.1)"),
                    "RSV1 set on a continuation frame: only the first frame of a compressed "
                    "message carries it (RFC 7692 §6.1)")
                self._violation = self._violation or violation
        else:
            if self._opcode is not None:
                violation = self._fail(
                    WebSocketProtocolError("new data frame before the fragmented message ended"),
                    f"new {frame.opcode.name} frame before the previous message ended (§5.4)")
                violation = self._violation or violation
                self._reset()  # tolerant: the unfinished message is dropped; this one begins
                self._violation = violation
            if frame.fin and not frame.rsv1 and self._violation is None:
                return self._whole(frame)  # the common case: a whole message in one frame
            self._opcode = frame.opcode
            self._compressed = frame.rsv1 and self.inflater is not None
        self._add(frame)
        if not frame.fin:
            return None
        return self._finish()

    def _whole(self, frame: Frame) -> Reassembled:
        """A message in one uncompressed frame."""
        payload = frame.payload
        if frame.opcode is not Opcode.TEXT:
            return Reassembled(frame.opcode, payload, None, 1, False, len(payload))
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            violation = self._fail(InvalidUTF8("text message is not valid UTF-8"),
                                   "text message is not valid UTF-8 (§8.1)")
            return Reassembled(frame.opcode, payload, None, 1, False, len(payload), violation)
        return Reassembled(frame.opcode, payload, text, 1, False, len(payload))

    def _add(self, frame: Frame) -> None:
        """One fragment: inflate it if the message is compressed, check its text, keep it."""
        self._frames += 1
        self._wire_length += len(frame.payload)
        data: bytes | None = frame.payload
        if self._compressed:
            data = self._inflate(frame)
        if data is None:
            return
        if self._opcode is Opcode.TEXT and self._text_valid:
            try:
                self._utf8.decode(data, final=frame.fin)
            except UnicodeDecodeError:
                self._text_valid = False
                violation = self._fail(InvalidUTF8("text message is not valid UTF-8"),
                                       "text message is not valid UTF-8 (§8.1)")
                self._violation = self._violation or violation  # the first one counts
        if data:  # empty fragments add nothing: a stream of them must not grow a list
            self._parts.append(data)

    def _inflate(self, frame: Frame) -> bytes | None:
        if self._parts is None:
            return None  # the message is already lost
        try:
            return self.inflater.inflate(frame.payload, fin=frame.fin)
        except RemoteProtocolError as exc:
            if not self.tolerant:
                raise
            self._violation = exc.reason  # replaces any earlier one: the message is lost
            self._parts = None
            return None

    def _finish(self) -> Reassembled:
        opcode, parts = self._opcode, self._parts
        data = None if parts is None else b"".join(parts)
        text = None
        if data is not None and opcode is Opcode.TEXT and self._text_valid:
            text = data.decode("utf-8")  # already checked, fragment by fragment
        message = Reassembled(opcode, data, text, self._frames, self._compressed,
                              self._wire_length, self._violation)
        self._reset()
        return message

    def _reset(self) -> None:
        self._opcode = None
        self._parts = []
        self._frames = self._wire_length = 0
        self._compressed = False
        self._violation = None
        self._text_valid = True
        self._utf8.reset()

    def _fail(self, error: WebSocketProtocolError, description: str) -> str:
        """Strict: raise ``error``.  Tolerant: return ``description``, to report it."""
        if not self.tolerant:
            raise error
        return description

    # -- §8.1 fail fast ---------------------------------------------------------------------

    def check_partial_text(self, b0: int, data: bytes, first: bool) -> None:
        """Check the part of a frame that has arrived so far (``data``; ``first``: its first
        bytes) when it belongs to a text message, without waiting for the frame's end.

        The bytes go through a second incremental decoder that continues from where the
        message's decoder stands (a character may straddle two fragments); the frame is
        decoded for real once complete.
        """
        opcode = b0 & 0x0F
        if not ((opcode == Opcode.TEXT and self._opcode is None)
                or (opcode == Opcode.CONT and self._opcode is Opcode.TEXT)):
            return  # binary, control, or an error the complete frame will report
        if (opcode == Opcode.TEXT and b0 & 0x40 and self.inflater is not None) \
                or (opcode == Opcode.CONT and self._compressed):
            return  # compressed (RFC 7692): its text is checked as it is inflated
        if first:  # the first bytes of this frame: start where the message stands
            if opcode == Opcode.TEXT:
                self._partial_utf8.reset()
            else:
                self._partial_utf8.setstate(self._utf8.getstate())
        try:
            self._partial_utf8.decode(data)
        except UnicodeDecodeError:
            raise InvalidUTF8("text message is not valid UTF-8") from None
