"""lablib.show.table: the conversation table."""

import pytest

from lablib.capture.dissect import dissect, dissect_streams
from lablib.capture.records import Chunk, Conversation
from lablib.show.table import conversation_table
from lablib.websocket.frames import Opcode, encode_close_payload, encode_frame
from lablib.websocket.handshake import accept_key

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
C2S = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
       b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
       + encode_frame(Opcode.CLOSE, encode_close_payload(1000), masking_key=b"abcd"))
S2C = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Accept: " + accept_key(KEY).encode() + b"\r\n\r\n"
       b"\x81\x05Hello" + encode_frame(Opcode.CLOSE, encode_close_payload(1000)))


def _timed() -> Conversation:
    split = C2S.index(b"\x81\x85")
    return Conversation(7, ("127.0.0.1", 40000), ("127.0.0.1", 8765), [
        Chunk(1.0, "c2s", C2S[:split]), Chunk(1.0015, "s2c", S2C[:S2C.index(b"\x81\x05")]),
        Chunk(1.25, "c2s", C2S[split:]), Chunk(1.5, "s2c", S2C[S2C.index(b"\x81\x05"):])],
        start=0.999, end=1.75)


def test_text_without_times_is_exact():
    table = conversation_table(dissect_streams(C2S, S2C), times="none")
    assert table.text() == """\
#  dir  layer      summary
1  →    http       GET /chat HTTP/1.1 [Upgrade: websocket]
2  ←    http       HTTP/1.1 101 Switching Protocols
3  →    websocket  TEXT fin=1 mask=1 len=5 'Hello'
4  →    websocket  CLOSE fin=1 mask=1 len=2 1000 NORMAL_CLOSURE
5  ←    websocket  TEXT fin=1 mask=0 len=5 'Hello'
6  ←    websocket  CLOSE fin=1 mask=0 len=2 1000 NORMAL_CLOSURE"""
    assert repr(table) == table.text()


def test_times_absolute_and_relative():
    records = dissect(_timed())
    absolute = conversation_table(records, precision=3).text().splitlines()
    assert absolute[0].split() == ["#", "time", "dir", "layer", "summary"]
    assert absolute[1].split()[:4] == ["1", "0.999", "·", "tcp"]
    assert absolute[3].split()[:3] == ["3", "1.002", "←"]   # the 101 came in at 1.0015
    relative = conversation_table(records, times="relative", precision=2,
                                  layers=("http", "websocket")).text().splitlines()
    assert [line.split()[1] for line in relative[1:]] == [
        "+0.00", "+0.00", "+0.25", "+0.25", "+0.50", "+0.50"]
    with pytest.raises(ValueError):
        conversation_table(records, times="sometimes")


def test_depth_indent_width_and_conversation_column():
    s2c = S2C + encode_frame(Opcode.TEXT, b"a" * 80, fin=False) + encode_frame(Opcode.CONT, b"b")
    records = dissect_streams(C2S, s2c)
    text = conversation_table(records, times="none", width=40).text()
    message = [line for line in text.splitlines() if "message" in line][0]
    assert message.split("websocket", 1)[1].startswith("    TEXT message")  # indented summary
    summaries = [row[-1] for row in conversation_table(records, width=40).rows()]
    assert max(len(s) for s in summaries) == 40 and summaries[-1].endswith("...")
    assert "message" not in conversation_table(records, max_depth=0).text()
    several = dissect(_timed()) + dissect(Conversation(8, ("a", 1), ("b", 2)))
    assert "conn" in conversation_table(several).columns


def test_html():
    html = conversation_table(dissect(_timed()))._repr_html_()
    assert html.startswith("<table") and html.count("<tr") == 1 + 8
    assert "GET /chat HTTP/1.1 [Upgrade: websocket]" in html and "background:" in html
    assert "<script" not in html


def _cells_by_column(table_html: str) -> dict[str, list[str]]:
    """column name -> the style of its header and of each of its cells, read from the HTML."""
    from html.parser import HTMLParser

    rows: list[list[tuple[str, str]]] = []

    class Cells(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                rows.append([])
            elif tag in ("th", "td"):
                rows[-1].append((dict(attrs).get("style", ""), ""))

        def handle_data(self, data):
            if rows and rows[-1]:
                style, text = rows[-1][-1]
                rows[-1][-1] = (style, text + data)

    Cells().feed(table_html)
    header = [text for _, text in rows[0]]
    return {name: [row[c][0] for row in rows] for c, name in enumerate(header)}


def test_numbers_right_text_left_in_html():
    """JupyterLab right-aligns table cells unless told otherwise: every cell says its alignment."""
    several = dissect(_timed()) + dissect(Conversation(8, ("a", 1), ("b", 2)))
    columns = _cells_by_column(conversation_table(several)._repr_html_())
    assert list(columns) == ["#", "time", "conn", "dir", "layer", "summary"]
    for name, styles in columns.items():
        wanted = "text-align:right" if name in ("#", "time", "conn") else "text-align:left"
        assert len(styles) == 1 + len(several)
        assert all(wanted in style for style in styles), (name, styles)


def test_numbers_right_text_left_in_text():
    later = Conversation(10, ("a", 1), ("b", 2), start=12.25, end=12.5)
    records = dissect(_timed()) * 2 + dissect(later)
    lines = conversation_table(records, precision=1).text().splitlines()
    assert lines[0] == " #  time  conn  dir  layer      summary"
    assert lines[1] == " 1   1.0     7  ·    tcp        open 127.0.0.1:40000 -> 127.0.0.1:8765"
    assert lines[10] == "10   1.0     7  →    http       GET /chat HTTP/1.1 [Upgrade: websocket]"
    assert lines[17] == "17  12.2    10  ·    tcp        open a:1 -> b:2"


def test_html_summary_wraps_other_columns_do_not():
    """A long summary wraps (keeping its indentation) instead of widening the notebook."""
    columns = _cells_by_column(conversation_table(dissect(_timed()))._repr_html_())
    assert all("white-space:pre-wrap" in style for style in columns["summary"][1:])
    for name in ("#", "time", "dir", "layer"):
        assert all(style.endswith("white-space:pre") for style in columns[name][1:]), name
