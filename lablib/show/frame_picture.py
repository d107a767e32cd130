"""RFC 6455 §5.2 drawn for one frame: its header bit by bit, as in the RFC's figure.

:func:`frame_picture` takes a :class:`~lablib.websocket.frames.Frame` or the bytes of one frame
and returns a :class:`FramePicture`.  Jupyter shows its HTML (a 32-column grid, one coloured
cell per field); ``repr()``/:meth:`FramePicture.text` give the same picture in plain text, in
the RFC's own ASCII style, which is what stored notebook outputs compare::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |1|0|0|0|0 0 0 1|1|0 0 0 0 1 0 1|0 0 1 1 0 1 1 1 1 1 1 1 1 0 1 0|
    |F|R|R|R|opcode |M| payload len |          masking key          |
    ...

Only the start of the payload is drawn (up to the end of the row it starts in); the legend
under the picture lists every field's value, the whole payload masked and unmasked.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..errors import LablibError
from ..websocket.frames import (NEED_DATA, CloseCode, Frame, FrameParser, Opcode,
                                parse_close_payload)

__all__ = ["FramePicture", "frame_picture", "FIELD_COLORS"]

#: Background colour of each field in the HTML picture (also used by the hexdump).
FIELD_COLORS = {
    "FIN": "#f4cccc", "RSV1": "#fce5cd", "RSV2": "#fce5cd", "RSV3": "#fce5cd",
    "opcode": "#fff2cc", "MASK": "#d9ead3", "payload len": "#d0e0e3",
    "extended payload length": "#cfe2f3", "masking key": "#d9d2e9", "payload data": "#ead1dc",
}

_ROW_BITS = 32


@dataclass(frozen=True, slots=True)
class _Field:
    """One field of the header: its bits on the wire and what they say."""

    name: str
    bits: str                 # "0"/"1" characters, most significant first
    values: tuple[str, ...]   # short value lines printed under the name
    color_key: str
    unmasked: bytes | None = None  # payload data only: the same bytes unmasked (§5.3)


@dataclass(frozen=True, slots=True)
class _Piece:
    """The part of a field that falls in one 32-bit row."""

    field: _Field
    start: int        # first bit, counted from the start of the row
    bits: str
    skip: int         # bits of the field in earlier rows (0 for the first piece)

    @property
    def first(self) -> bool:
        """The field's first piece (continuations are labelled "(cont.)")."""
        return self.skip == 0

    @property
    def end(self) -> int:
        return self.start + len(self.bits)

    @property
    def width(self) -> int:
        """Characters between the cell's borders in the text picture."""
        return 2 * len(self.bits) - 1


def frame_picture(frame: Frame | bytes | bytearray | memoryview) -> FramePicture:
    """The §5.2 picture of ``frame`` (a Frame, or the exact bytes of one frame)."""
    if isinstance(frame, Frame):
        return FramePicture(frame, frame.encode())
    wire = bytes(frame)
    parser = FrameParser(mask_required=None, allowed_rsv=0x70)
    parser.feed(wire)
    parsed = parser.next_frame()  # raises RemoteProtocolError for an invalid frame
    if parsed is NEED_DATA:
        raise ValueError(f"{len(wire)} bytes are not a complete frame")
    size = parsed.header_len + parsed.payload_len
    if size != len(wire):
        raise ValueError(f"one frame is {size} bytes; got {len(wire)} (pass one frame)")
    return FramePicture(parsed, wire)


class FramePicture:
    """A frame's header drawn as the RFC 6455 §5.2 figure (HTML in Jupyter, text in repr)."""

    def __init__(self, frame: Frame, wire: bytes) -> None:
        self.frame = frame
        self.wire = wire
        self.fields = _fields(frame, wire)
        self.rows = _layout(self.fields)

    # -- plain text ------------------------------------------------------------------------------

    def text(self) -> str:
        lines = [" 0                   1                   2                   3",
                 " " + " ".join(str(i % 10) for i in range(_ROW_BITS))]
        previous: list[_Piece] = []
        for row in self.rows:
            lines.append(_border(previous, row))
            lines.append(_cells(row, [" ".join(p.bits) for p in row]))
            labels = [_label_lines(p) for p in row]
            height = max(len(label) for label in labels)
            for i in range(height):
                lines.append(_cells(row, [label[i] if i < len(label) else "" for label in labels]))
            previous = row
        lines.append(_border(previous, []))
        return "\n".join(lines + [""] + self.legend())

    def legend(self) -> list[str]:
        """Every field's value, the whole payload included (the picture shows its start)."""
        f = self.frame
        shown = sum(len(p.bits) for row in self.rows for p in row
                    if p.field.color_key == "payload data") // 8
        lines = [f"FIN={int(f.fin)} RSV1={int(f.rsv1)} RSV2={int(f.rsv2)} RSV3={int(f.rsv3)} "
                 f"opcode={int(f.opcode):#x} ({f.opcode.name}) MASK={int(f.mask)} "
                 f"payload len={self.wire[1] & 0x7F}"]
        if f.payload_len > 125:
            lines.append(f"extended payload length={f.payload_len}")
        lines.append(f"payload length: {f.payload_len} bytes, header: {f.header_len} bytes")
        if f.masking_key is not None:
            lines.append(f"masking key = {f.masking_key.hex(' ')}")
            lines.append(f"payload (masked)   = {_hex(self.wire[f.header_len:])}")
            lines.append(f"payload (unmasked) = {_hex(f.payload)}  {_printable(f.payload)}")
        else:
            lines.append(f"payload = {_hex(f.payload)}  {_printable(f.payload)}")
        if f.opcode == Opcode.CLOSE:
            lines.append(_close_line(f.payload))
        if f.payload_len > shown:
            lines.append(f"(the picture shows the first {shown} of {f.payload_len} payload bytes)")
        return lines

    def __repr__(self) -> str:
        return self.text()

    # -- HTML ----------------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        td = "border:1px solid #555;padding:1px 2px;text-align:center;vertical-align:top;"
        head = "<tr>" + "".join(f'<td style="font-size:70%;color:#555;text-align:center">'
                                f'{i // 10 if i % 10 == 0 else ""}</td>' for i in range(_ROW_BITS))
        head += "</tr><tr>" + "".join(f'<td style="font-size:70%;color:#555;text-align:center">'
                                      f"{i % 10}</td>" for i in range(_ROW_BITS)) + "</tr>"
        body = []
        for row in self.rows:
            cells = []
            for piece in row:
                name = piece.field.name if piece.first else f"{piece.field.name} (cont.)"
                if len(piece.bits) == 1:
                    label = "<br>".join(html.escape(c) for c in name)
                else:
                    label = "<br>".join([f"<b>{html.escape(name)}</b>"]
                                        + [html.escape(v) for v in _values(piece)])
                color = FIELD_COLORS[piece.field.color_key]
                cells.append(f'<td colspan="{len(piece.bits)}" title="{html.escape(name)}" '
                             f'style="{td}background:{color}">'
                             f'<span style="letter-spacing:2px">{piece.bits}</span>'
                             f'<br><span style="font-size:80%">{label}</span></td>')
            body.append("<tr>" + "".join(cells) + "</tr>")
        legend = "<br>".join(html.escape(line) for line in self.legend())
        return ('<div style="font-family:monospace">'
                '<table style="border-collapse:collapse;font-family:monospace;font-size:12px">'
                f'{head}{"".join(body)}</table>'
                f'<div style="margin-top:4px;font-size:12px">{legend}</div></div>')


# --- fields and layout ----------------------------------------------------------------------

def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def _fields(frame: Frame, wire: bytes) -> list[_Field]:
    """The header fields in wire order, then the start of the payload (§5.2)."""
    b0, b1 = wire[0], wire[1]
    length_field = b1 & 0x7F
    fields = [
        _Field("FIN", _bits(b0 >> 7, 1), (), "FIN"),
        _Field("RSV1", _bits(b0 >> 6 & 1, 1), (), "RSV1"),
        _Field("RSV2", _bits(b0 >> 5 & 1, 1), (), "RSV2"),
        _Field("RSV3", _bits(b0 >> 4 & 1, 1), (), "RSV3"),
        _Field("opcode", _bits(b0 & 0x0F, 4), (f"{b0 & 0x0F:#x}", frame.opcode.name), "opcode"),
        _Field("MASK", _bits(b1 >> 7, 1), (), "MASK"),
        _Field("payload len", _bits(length_field, 7),
               (str(length_field) if length_field < 126
                else f"{length_field} (ext{16 if length_field == 126 else 64})",), "payload len"),
    ]
    pos = 2
    if length_field >= 126:
        size = 2 if length_field == 126 else 8
        fields.append(_Field("extended payload length",
                             _bits(int.from_bytes(wire[2:2 + size], "big"), 8 * size),
                             (str(frame.payload_len),), "extended payload length"))
        pos += size
    if frame.masking_key is not None:
        fields.append(_Field("masking key", _bits(int.from_bytes(wire[pos:pos + 4], "big"), 32),
                             (), "masking key"))
        pos += 4
    # Payload: to the end of the row it starts in; if that is only 2 bytes, one more row.
    room = (_ROW_BITS - (pos * 8) % _ROW_BITS) // 8
    if room < _ROW_BITS // 8:
        room += _ROW_BITS // 8
    shown = wire[pos:pos + min(room, frame.payload_len)]
    if shown:
        name = "payload data (masked)" if frame.masking_key is not None else "payload data"
        unmasked = frame.payload[:len(shown)] if frame.masking_key is not None else None
        fields.append(_Field(name, "".join(_bits(b, 8) for b in shown), (), "payload data",
                             unmasked))
    return fields


def _layout(fields: list[_Field]) -> list[list[_Piece]]:
    """Cut the fields into 32-bit rows (a long field continues on the next row)."""
    rows: list[list[_Piece]] = [[]]
    column = 0
    for field in fields:
        skip = 0
        while skip < len(field.bits):
            if column == _ROW_BITS:
                rows.append([])
                column = 0
            take = min(len(field.bits) - skip, _ROW_BITS - column)
            rows[-1].append(_Piece(field, column, field.bits[skip:skip + take], skip))
            skip, column = skip + take, column + take
    return rows


def _values(piece: _Piece, width: int = 1 << 30) -> list[str]:
    """Value lines for a multi-bit piece (at most ``width`` characters each)."""
    field = piece.field
    if field.color_key == "masking key":
        return [_piece_bytes(piece).hex(" ")]
    if field.color_key == "payload data":
        return _payload_values(piece, width)
    return list(field.values) if piece.first else []


def _piece_bytes(piece: _Piece) -> bytes:
    return int(piece.bits, 2).to_bytes(len(piece.bits) // 8, "big")


def _payload_values(piece: _Piece, width: int) -> list[str]:
    """The payload bytes of this piece in hex, and as text (unmasked when the frame is masked)."""
    data = _piece_bytes(piece)
    unmasked = piece.field.unmasked
    if unmasked is None:
        return [data.hex(" "), _printable(data)]
    clear = unmasked[piece.skip // 8:piece.skip // 8 + len(data)]
    for candidate in (f"unmasked: {clear.hex(' ')} {_printable(clear)}",
                      f"= {clear.hex(' ')} {_printable(clear)}", _printable(clear)):
        if len(candidate) <= width:
            return [data.hex(" "), candidate]
    return [data.hex(" ")]


def _label_lines(piece: _Piece) -> list[str]:
    """What goes under a piece's bits: a 1-bit field's name vertically (as in the RFC), else
    the name and the value centred."""
    name = piece.field.name if piece.first else f"{piece.field.name} (cont.)"
    if len(piece.bits) == 1:
        return list(name)
    return [s[:piece.width].center(piece.width) for s in [name] + _values(piece, piece.width)]


def _cells(row: list[_Piece], texts: list[str]) -> str:
    return "|" + "|".join(t[:p.width].ljust(p.width) for p, t in zip(row, texts)) + "|"


def _border(above: list[_Piece], below: list[_Piece]) -> str:
    """A '+---+' line whose '+' marks every field boundary of the rows above and below."""
    pieces = above + below
    width = 2 * max(p.end for p in pieces)
    line = ["-"] * (width + 1)
    for p in pieces:
        line[2 * p.start] = line[2 * p.end] = "+"
    return "".join(line)


def _close_line(payload: bytes) -> str:
    """§5.5.1: a close payload is a 2-byte status code and a UTF-8 reason (or nothing)."""
    try:
        code, reason = parse_close_payload(payload)
    except LablibError as exc:
        return f"close payload invalid: {exc}"
    if not payload:
        return "close: no status code (reads as 1005)"
    try:
        name = CloseCode(code).name
    except ValueError:
        name = "application" if code >= 4000 else "library"
    return f"close code = {code} ({name}), reason = {reason!r}"


_LEGEND_BYTES = 32  # the legend shows this many payload bytes, then "..."


def _hex(data: bytes) -> str:
    if not data:
        return "(empty)"
    more = f" ... ({len(data)} bytes)" if len(data) > _LEGEND_BYTES else ""
    return data[:_LEGEND_BYTES].hex(" ") + more


def _printable(data: bytes) -> str:
    """The bytes as ASCII, '.' for anything unprintable (like hexdump -C)."""
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in data[:_LEGEND_BYTES])
    return f"'{text}'" + ("..." if len(data) > _LEGEND_BYTES else "")
