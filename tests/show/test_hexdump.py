"""lablib.show.hexdump: fields overlaid on bytes."""

from lablib.capture.dissect import dissect_streams
from lablib.show.hexdump import HexDump, Span, frame_hexdump, hexdump
from lablib.websocket.frames import Frame, Opcode

HELLO = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"


def test_rfc_hello_text_is_exact():
    assert frame_hexdump(HELLO).text() == """\
0000  81 85 37 fa 21 3d 7f 9f  4d 51 58                 |..7.!=..MQX|
      HH HH KK KK KK KK PP PP  PP PP PP
HH  header: FIN, RSV1-3, opcode, MASK, payload len  bytes 0-1
KK  masking key                                     bytes 2-5
PP  payload data (masked)                           bytes 6-10"""


def test_frame_object_and_extended_length():
    dump = hexdump(Frame(Opcode.BINARY, bytes(20)))
    assert [s.name for s in dump.spans] == ["header: FIN, RSV1-3, opcode, MASK, payload len",
                                            "payload data"]
    big = hexdump(Frame(Opcode.BINARY, bytes(300), masking_key=b"abcd"))
    assert [(s.code, s.start, s.end) for s in big.spans] == [
        ("HH", 0, 2), ("LL", 2, 4), ("KK", 4, 8), ("PP", 8, 308)]
    lines = big.text().splitlines()
    assert lines[1] == "      HH HH LL LL KK KK KK KK  PP PP PP PP PP PP PP PP"
    assert lines[-3].startswith("LL  extended payload length (16 bits)")


def test_plain_bytes_and_custom_spans():
    dump = hexdump(bytes(range(65, 65 + 20)), [Span(0, 3, "magic"), Span(3, 4, "version")])
    assert dump.text() == """\
0000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|
      MM MM MM VV
0010  51 52 53 54                                       |QRST|
MM  magic    bytes 0-2
VV  version  byte 3"""
    assert hexdump(b"").text() == "(no bytes)"


def test_records_get_their_layout():
    c2s = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    s2c = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    request, response = dissect_streams(c2s, s2c)
    assert [s.name for s in hexdump(request).spans] == [
        "start line", "header fields", "empty line (end of header)"]
    assert [s.name for s in hexdump(response).spans][-1] == "body"


def test_html_colours_the_fields():
    html = frame_hexdump(HELLO)._repr_html_()
    assert html.count('title="masking key"') == 4
    assert html.count('title="payload data (masked)"') == 5
    assert "<script" not in html and "|..7.!=..MQX|" in html
    assert isinstance(frame_hexdump(HELLO), HexDump)
    assert repr(frame_hexdump(HELLO)).startswith("0000")
