"""Hexdumps with the protocol fields laid over the bytes.

:func:`hexdump` takes bytes, a :class:`~lablib.websocket.frames.Frame` or a dissected
:class:`~lablib.capture.dissect.Record` and returns a :class:`HexDump`: coloured spans in
Jupyter, and in plain text (``repr``) the classic ``offset  hex  |ascii|`` rows, each followed
by a line of two-letter codes saying which field every byte belongs to, then a legend.  For
the bytes of a frame, :func:`frame_hexdump` gives (RFC 6455 §5.7, a masked "Hello")::

    0000  81 85 37 fa 21 3d 7f 9f  4d 51 58                 |..7.!=..MQX|
          HH HH KK KK KK KK PP PP  PP PP PP
    HH  header: FIN, RSV1-3, opcode, MASK, payload len  bytes 0-1
    KK  masking key                                     bytes 2-5
    PP  payload data (masked)                           bytes 6-10

Bytes that belong to no field get blanks.  Build your own overlay with :class:`Span`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterable

from ..websocket.frames import NEED_DATA, Frame, FrameParser
from .frame_picture import FIELD_COLORS

__all__ = ["Span", "HexDump", "hexdump", "frame_hexdump", "frame_spans", "http_spans"]

_PALETTE = ["#f4cccc", "#d9d2e9", "#ead1dc", "#d0e0e3", "#fff2cc", "#d9ead3", "#cfe2f3",
            "#fce5cd"]


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``start`` to ``end`` (exclusive) are the field ``name``."""

    start: int
    end: int
    name: str
    color: str | None = None
    code: str | None = None   #: the two letters under its bytes (default: from the name)


def frame_spans(wire: bytes) -> list[Span]:
    """The §5.2 fields of one frame's bytes: header, extended length, masking key, payload.

    The frame is parsed with lablib's FrameParser; the layout follows from its header length.
    """
    parser = FrameParser(mask_required=None, allowed_rsv=0x70)
    parser.feed(wire)
    frame = parser.next_frame()
    if frame is NEED_DATA:
        raise ValueError(f"{len(wire)} bytes are not a complete frame")
    key_len = 4 if frame.mask else 0
    ext_len = frame.header_len - 2 - key_len
    spans = [Span(0, 2, "header: FIN, RSV1-3, opcode, MASK, payload len",
                  FIELD_COLORS["FIN"], "HH")]
    pos = 2
    if ext_len:
        spans.append(Span(pos, pos + ext_len, f"extended payload length ({8 * ext_len} bits)",
                          FIELD_COLORS["extended payload length"], "LL"))
        pos += ext_len
    if key_len:
        spans.append(Span(pos, pos + 4, "masking key", FIELD_COLORS["masking key"], "KK"))
        pos += 4
    if frame.payload_len:
        name = "payload data (masked)" if frame.mask else "payload data"
        spans.append(Span(pos, pos + frame.payload_len, name, FIELD_COLORS["payload data"], "PP"))
    return spans


def http_spans(raw: bytes) -> list[Span]:
    """RFC 9112 §2.1: start line, header fields, the empty line, then the body."""
    spans = []
    line_end = raw.find(b"\r\n")
    head_end = raw.find(b"\r\n\r\n")
    if line_end < 0 or head_end < 0:
        return [Span(0, len(raw), "HTTP message (incomplete)")]
    spans.append(Span(0, line_end + 2, "start line"))
    if head_end > line_end:
        spans.append(Span(line_end + 2, head_end + 2, "header fields"))
    spans.append(Span(head_end + 2, head_end + 4, "empty line (end of header)"))
    if len(raw) > head_end + 4:
        spans.append(Span(head_end + 4, len(raw), "body"))
    return spans


def hexdump(obj: Any, spans: Iterable[Span] | None = None, *, width: int = 16) -> HexDump:
    """A :class:`HexDump` of ``obj``: bytes, a Frame, or a dissect Record.

    For a Frame or a websocket frame record the frame's fields are overlaid, for an http
    record its start line / header fields / body; pass ``spans`` to overlay your own.
    """
    data, auto = _bytes_and_spans(obj)
    return HexDump(data, auto if spans is None else list(spans), width=width)


def frame_hexdump(wire: bytes, *, width: int = 16) -> HexDump:
    """The hexdump of one frame's bytes with its §5.2 fields overlaid."""
    return HexDump(bytes(wire), frame_spans(bytes(wire)), width=width)


def _bytes_and_spans(obj: Any) -> tuple[bytes, list[Span]]:
    if isinstance(obj, Frame):
        wire = obj.encode()
        return wire, frame_spans(wire)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj), []
    raw = getattr(obj, "raw", None)
    if raw is None:
        raise TypeError(f"cannot hexdump {type(obj).__name__}")
    layer, kind = getattr(obj, "layer", None), getattr(obj, "kind", None)
    if layer == "websocket" and kind == "frame":
        return raw, frame_spans(raw)
    if layer == "http" and kind in ("request", "response"):
        return raw, http_spans(raw)
    return raw, []


class HexDump:
    """Rows of ``width`` bytes with field codes underneath (text) or coloured spans (HTML)."""

    def __init__(self, data: bytes, spans: list[Span] = (), *, width: int = 16) -> None:
        self.data = bytes(data)
        self.spans = sorted(spans, key=lambda s: (s.start, s.end))
        self.width = width
        self.codes = _codes(self.spans)
        self._owner = [-1] * len(self.data)   # span index of each byte (-1: none)
        for i, span in enumerate(self.spans):
            for j in range(max(span.start, 0), min(span.end, len(self.data))):
                self._owner[j] = i

    # -- text ------------------------------------------------------------------------------------

    def text(self) -> str:
        if not self.data:
            return "(no bytes)"
        lines = []
        for row in range(0, max(len(self.data), 1), self.width):
            chunk = self.data[row:row + self.width]
            lines.append(f"{row:04x}  {self._hex_cells(chunk)}  |{_ascii(chunk)}|")
            if self.spans:
                codes = [self.codes[o] if (o := self._owner[row + i]) >= 0 else "  "
                         for i in range(len(chunk))]
                if any(c.strip() for c in codes):  # rows outside every field get none
                    lines.append(("      " + self._join(codes)).rstrip())
        name_width = max((len(s.name) for s in self.spans), default=0)
        for i, span in enumerate(self.spans):
            where = (f"byte {span.start}" if span.end - span.start == 1
                     else f"bytes {span.start}-{span.end - 1}")
            lines.append(f"{self.codes[i]}  {span.name.ljust(name_width)}  {where}")
        return "\n".join(lines)

    def _hex_cells(self, chunk: bytes) -> str:
        cells = [f"{b:02x}" for b in chunk] + ["  "] * (self.width - len(chunk))
        return self._join(cells)

    def _join(self, cells: list[str]) -> str:
        # Two groups of eight, like hexdump -C.
        half = self.width // 2
        return " ".join(cells[:half]) + ("  " + " ".join(cells[half:]) if len(cells) > half else "")

    def __repr__(self) -> str:
        return self.text()

    # -- HTML ----------------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        colors = [s.color or _PALETTE[i % len(_PALETTE)] for i, s in enumerate(self.spans)]
        rows = []
        for row in range(0, max(len(self.data), 1), self.width):
            cells = []
            for i, b in enumerate(self.data[row:row + self.width]):
                if i == self.width // 2:
                    cells.append(" ")
                owner = self._owner[row + i]
                if owner < 0:
                    cells.append(f"{b:02x}")
                else:
                    title = html.escape(self.spans[owner].name)
                    cells.append(f'<span title="{title}" style="background:{colors[owner]}">'
                                 f"{b:02x}</span>")
            chunk = self.data[row:row + self.width]
            pad = "   " * (self.width - len(chunk)) + (" " if len(chunk) <= self.width // 2 else "")
            rows.append(f'<span style="color:#777">{row:04x}</span>  {" ".join(cells)}{pad}  '
                        f"|{html.escape(_ascii(chunk))}|")
        legend = "".join(
            f'<div><span style="background:{colors[i]};padding:0 4px">{self.codes[i]}</span> '
            f"{html.escape(s.name)} (bytes {s.start}-{s.end - 1})</div>"
            for i, s in enumerate(self.spans))
        return (f'<div style="font-family:monospace;font-size:12px">'
                f'<pre style="margin:0">{chr(10).join(rows)}</pre>{legend}</div>')


def _ascii(chunk: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)


def _codes(spans: list[Span]) -> list[str]:
    """A distinct two-letter code per field: its own, else its initial doubled (HH), else the
    next free letter of its name or the alphabet."""
    used = {s.code for s in spans if s.code}
    codes = []
    for span in spans:
        if span.code:
            codes.append(span.code)
            continue
        letters = [c.upper() for c in span.name if c.isalpha()] + [chr(c) for c in range(65, 91)]
        code = next((c * 2 for c in letters if c * 2 not in used), "??")
        used.add(code)
        codes.append(code)
    return codes
