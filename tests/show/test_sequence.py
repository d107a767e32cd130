"""lablib.show.sequence: sequence diagrams."""

from matplotlib.figure import Figure
from matplotlib.text import Annotation

from lablib.capture.dissect import Decoded, Decoder, dissect_streams
from lablib.show.sequence import arrows, sequence_diagram, sequence_text
from lablib.websocket.frames import Opcode, encode_frame
from lablib.websocket.handshake import accept_key

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
C2S = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
       b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
S2C = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Accept: " + accept_key(KEY).encode() + b"\r\n\r\n"
       b"\x81\x05Hello" + encode_frame(Opcode.PING, b"") + encode_frame(Opcode.CLOSE, b"\x03\xe8"))


def _arrows(fig: Figure) -> list[Annotation]:
    return [t for ax in fig.axes for t in ax.texts
            if isinstance(t, Annotation) and t.arrow_patch is not None]


def test_one_arrow_per_message():
    records = dissect_streams(C2S, S2C)
    fig = sequence_diagram(records, title="echo")
    assert isinstance(fig, Figure)
    assert len(_arrows(fig)) == 6   # request, 101, TEXT c2s, TEXT/PING/CLOSE s2c
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "GET /chat HTTP/1.1 [Upgrade: websocket]" in labels
    assert not any(label.startswith("[") for label in labels)   # no times unless asked
    timed = sequence_diagram(records, times=True)
    assert any(t.get_text().startswith("[0.000] GET") for ax in timed.axes for t in ax.texts)


def test_directions_and_errors():
    records = dissect_streams(C2S + b"\x81", S2C)
    fig = sequence_diagram(records)
    request = _arrows(fig)[0]
    assert request.xyann[0] < request.xy[0]          # client (left) -> server (right)
    assert _arrows(fig)[1].xyann[0] > _arrows(fig)[1].xy[0]
    assert len(_arrows(fig)) == 6                    # the truncated frame is a cross, not an arrow
    assert any("stream ends inside a frame" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_children_go_under_their_message():
    shout = Decoder("shout", frozenset({"websocket"}),
                    lambda m: [Decoded("shout", "text", m.text.upper())] if m.text else None)
    records = dissect_streams(C2S, S2C, decoders=[shout])
    items = arrows(records)
    assert [len(kids) for _, kids in items] == [0, 0, 1, 1, 0, 0]
    assert items[2][1][0].summary == "HELLO" and items[2][1][0].depth == 1
    text = sequence_text(records, children=True)
    assert "| shout: HELLO" in text and "shout: HELLO |" in text


def test_text_form_is_exact():
    assert sequence_text(dissect_streams(C2S, S2C), width=50) == """\
client                                      server
  | GET /chat HTTP/1.1 [Upgrade: websocket]      |
  |--------------------------------------------->|
  |             HTTP/1.1 101 Switching Protocols |
  |<---------------------------------------------|
  | TEXT fin=1 mask=1 len=5 'Hello'              |
  |--------------------------------------------->|
  |              TEXT fin=1 mask=0 len=5 'Hello' |
  |<---------------------------------------------|
  |                      PING fin=1 mask=0 len=0 |
  |<---------------------------------------------|
  | CLOSE fin=1 mask=0 len=2 1000 NORMAL_CLOSURE |
  |<---------------------------------------------|"""


def test_text_form_keeps_its_width():
    text = sequence_text(dissect_streams(C2S + b"\x81", S2C), width=50, times=True)
    assert {len(line) for line in text.splitlines()[1:]} == {50}
    assert "  |X" in text
