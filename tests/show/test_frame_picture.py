"""lablib.show.frame_picture: the §5.2 picture of a frame, text exact and HTML complete."""

import pytest

from lablib.errors import RemoteProtocolError
from lablib.show.frame_picture import FramePicture, frame_picture
from lablib.websocket.frames import Frame, Opcode

HELLO = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # RFC 6455 §5.7: a masked "Hello"

HELLO_PICTURE = """\
 0                   1                   2                   3
 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
+-+-+-+-+-------+-+-------------+-------------------------------+
|1|0|0|0|0 0 0 1|1|0 0 0 0 1 0 1|0 0 1 1 0 1 1 1 1 1 1 1 1 0 1 0|
|F|R|R|R| opcode|M| payload len |          masking key          |
|I|S|S|S|  0x1  |A|      5      |             37 fa             |
|N|V|V|V|  TEXT |S|             |                               |
| |1|2|3|       |K|             |                               |
+-+-+-+-+-------+-+-------------+-------------------------------+
|0 0 1 0 0 0 0 1 0 0 1 1 1 1 0 1|0 1 1 1 1 1 1 1 1 0 0 1 1 1 1 1|
|      masking key (cont.)      |     payload data (masked)     |
|             21 3d             |             7f 9f             |
|                               |      unmasked: 48 65 'He'     |
+-------------------------------+---------------+---------------+
|0 1 0 0 1 1 0 1 0 1 0 1 0 0 0 1 0 1 0 1 1 0 0 0|
|         payload data (masked) (cont.)         |
|                    4d 51 58                   |
|            unmasked: 6c 6c 6f 'llo'           |
+-----------------------------------------------+

FIN=1 RSV1=0 RSV2=0 RSV3=0 opcode=0x1 (TEXT) MASK=1 payload len=5
payload length: 5 bytes, header: 6 bytes
masking key = 37 fa 21 3d
payload (masked)   = 7f 9f 4d 51 58
payload (unmasked) = 48 65 6c 6c 6f  'Hello'"""


def test_rfc_hello_text_is_exact():
    picture = frame_picture(HELLO)
    assert isinstance(picture, FramePicture)
    assert picture.text() == HELLO_PICTURE
    assert repr(picture) == HELLO_PICTURE


def test_frame_and_bytes_give_the_same_picture():
    frame = Frame(Opcode.TEXT, b"Hello", masking_key=b"\x37\xfa\x21\x3d")
    assert frame_picture(frame).text() == HELLO_PICTURE


def test_unmasked_with_16_bit_length():
    text = frame_picture(Frame(Opcode.BINARY, bytes(range(200)))).text()
    lines = text.splitlines()
    assert lines[3] == "|1|0|0|0|0 0 1 0|0|1 1 1 1 1 1 0|0 0 0 0 0 0 0 0 1 1 0 0 1 0 0 0|"
    assert "extended payload length" in lines[4] and "126 (ext16)" in lines[5]
    assert lines[5].rstrip("|").strip().endswith("200")
    assert "(the picture shows the first 4 of 200 payload bytes)" in text
    assert "masking key" not in text


def test_64_bit_length_spans_rows():
    text = frame_picture(Frame(Opcode.BINARY, bytes(70000), masking_key=b"abcd")).text()
    assert "127 (ext64)" in text and "extended payload length (cont.)" in text
    assert "extended payload length=70000" in text


def test_close_frame_legend():
    text = frame_picture(Frame(Opcode.CLOSE, b"\x03\xe8bye")).text()
    assert "close code = 1000 (NORMAL_CLOSURE), reason = 'bye'" in text


def test_empty_control_frame():
    lines = frame_picture(b"\x89\x00").text().splitlines()
    assert lines[2] == "+-+-+-+-+-------+-+-------------+"
    assert lines[3] == "|1|0|0|0|1 0 0 1|0|0 0 0 0 0 0 0|"
    assert "payload = (empty)  ''" in lines


def test_html_has_every_field():
    html = frame_picture(HELLO)._repr_html_()
    for name in ("FIN", "RSV1", "RSV2", "RSV3", "opcode", "MASK", "payload len", "masking key",
                 "payload data (masked)", "37 fa", "0x1", "TEXT", "&#x27;Hello&#x27;"):
        assert name in html or "<br>".join(name) in html, name
    assert "<script" not in html and 'colspan="7"' in html and "background:" in html


def test_rejects_what_is_not_one_frame():
    with pytest.raises(ValueError):
        frame_picture(HELLO[:5])
    with pytest.raises(ValueError):
        frame_picture(HELLO + b"\x81\x00")
    with pytest.raises(RemoteProtocolError):
        frame_picture(b"\x83\x00")
