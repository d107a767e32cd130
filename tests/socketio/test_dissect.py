"""The dissector's Socket.IO layer (lablib/socketio/dissect.py): Engine.IO messages shown as
Socket.IO packets, binary attachments joined back to their packet, bad input as error records."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablib.capture.dissect import DECODERS, Message, Record, dissect, dissect_capture, dissect_streams
from lablib.capture.pcap import read_pcap
from lablib.capture.records import Chunk, Conversation
from lablib.http import format_request, format_response
from lablib.socketio.dissect import BinaryPacket, SocketIODecoder, is_socketio
from lablib.socketio.packets import Packet, PacketType, deconstruct, encode
from lablib.websocket.frames import Opcode, encode_frame
from lablib.websocket.handshake import accept_key
from tests.aio_support import aiohttp_site, asyncio_test

ROOT = Path(__file__).resolve().parents[2]
SOCKETIO_ECHO = ROOT / "captures" / "socketio-echo.pcap"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"
WS_TARGET = "/socket.io/?EIO=4&transport=websocket"
PH0 = '{"_placeholder":true,"num":0}'
PH1 = '{"_placeholder":true,"num":1}'
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers ------------------------------------------------------------------------------------

def sio(records: list[Record], kind: str | None = None, direction: str | None = None) -> list[Record]:
    return [r for r in records if r.layer == "socketio" and (kind is None or r.kind == kind)
            and (direction is None or r.direction == direction)]


def errors(records: list[Record]) -> list[Record]:
    return [r for r in records if r.layer == "error"]


def frame(message: str | bytes, masking_key: bytes | None) -> bytes:
    if isinstance(message, str):
        return encode_frame(Opcode.TEXT, message.encode(), masking_key=masking_key)
    return encode_frame(Opcode.BINARY, message, masking_key=masking_key)


def upgrade(target: str = WS_TARGET) -> tuple[bytes, bytes]:
    request = format_request("GET", target, [
        ("Host", "127.0.0.1:8080"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")])
    response = format_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                     ("Sec-WebSocket-Accept", accept_key(KEY))])
    return request, response


def websocket(c2s: list[str | bytes], s2c: list[str | bytes] = (), target: str = WS_TARGET,
              eof: bool = True) -> list[Record]:
    """Dissect an Engine.IO WebSocket carrying these Engine.IO messages (text gets its "4")."""
    def eio(m):
        return "4" + m if isinstance(m, str) else m
    request, response = upgrade(target)
    return dissect_streams(request + b"".join(frame(eio(m), MASK) for m in c2s),
                           response + b"".join(frame(eio(m), None) for m in s2c), eof=eof)


def summaries(records: list[Record]) -> list[str]:
    return [r.summary for r in records if r.layer in ("socketio", "error")]


# --- registration and scope ---------------------------------------------------------------------

def test_the_decoder_is_a_default_decoder_kept_per_conversation():
    [decoder] = [d for d in DECODERS if d.name == "socketio"]
    assert decoder.carriers == frozenset({"engineio"})
    assert decoder.per_conversation and decoder.decode is SocketIODecoder
    fresh = decoder.for_conversation()
    assert isinstance(fresh.decode, SocketIODecoder)
    assert fresh.decode is not decoder.for_conversation().decode   # new state each time


@pytest.mark.parametrize("target, expected", [
    ("/socket.io/?EIO=4&transport=websocket", True),
    ("/socket.io?EIO=4", True),
    ("/app/socket.io/?EIO=4", True),
    ("/engine.io/?EIO=4&transport=polling", False),
    (None, False), ("", False),
])
def test_is_socketio(target, expected):
    assert is_socketio(target) is expected


def test_plain_engineio_is_left_alone():
    records = websocket(["hello", b"\x01\x02"], target="/engine.io/?EIO=4&transport=websocket")
    assert len([r for r in records if r.layer == "engineio"]) == 2
    assert sio(records) == [] and errors(records) == []


# --- the reference capture ----------------------------------------------------------------------

@pytest.mark.skipif(not SOCKETIO_ECHO.exists(), reason="captures/socketio-echo.pcap not shipped")
def test_socketio_echo_capture():
    records = dissect_capture(read_pcap(SOCKETIO_ECHO))
    assert errors(records) == []
    packets = sio(records)
    assert all(r.depth == 2 for r in packets)   # frame (0) -> Engine.IO (1) -> Socket.IO (2)
    assert [(r.direction, r.kind) for r in packets] == [
        ("c2s", "connect"), ("s2c", "connect"), ("c2s", "event"), ("s2c", "event"),
        ("c2s", "event"), ("s2c", "event"), ("s2c", "ack")]
    connect, accepted, echo, echo_back, call, call_back, ack = packets
    assert connect.summary == "SIO CONNECT / {}"
    assert connect.raw == b"40{}"      # the record shows its Engine.IO packet's bytes
    sid = accepted.fields["data"]["sid"]
    assert len(sid) == 20 and accepted.summary == f'SIO CONNECT / {{"sid":"{sid}"}}'
    assert echo.summary == echo_back.summary == 'SIO EVENT / "echo" ["Hello"]'
    assert echo.fields == {
        "packet": 1, "type": 2, "type_name": "EVENT", "namespace": "/", "id": None,
        "data": ["echo", "Hello"], "event": "echo", "args": ["Hello"],
        "attachments": [], "attachment_count": 0}
    assert call.summary == 'SIO EVENT / "echo" ["Hello with an ack"] id=1'
    assert call.fields["id"] == 1 and call_back.fields["id"] is None
    assert ack.summary == 'SIO ACK / id=1 ["Hello with an ack"]'
    assert (ack.fields["type_name"], ack.fields["id"], ack.fields["args"], ack.fields["event"]) \
        == ("ACK", 1, ["Hello with an ack"], None)
    assert isinstance(ack.obj, Packet) and ack.obj == Packet(PacketType.ACK, data=["Hello with an ack"], id=1)
    assert [r.fields["packet"] for r in packets if r.direction == "s2c"] == [0, 1, 2, 3]


# --- packets over a WebSocket -------------------------------------------------------------------

def test_every_packet_type_summarised():
    records = websocket(
        ['0/chat,{"token":"abc"}', "0", '2/chat,5["msg","hi",{"n":1}]', "1/chat,"],
        ['0/chat,{"sid":"abc"}', '4/x,{"message":"Invalid namespace"}', "3/chat,5[]",
         '4"not allowed"'])
    assert errors(records) == []
    assert summaries(records) == [
        'SIO CONNECT /chat {"token":"abc"}',
        "SIO CONNECT /",
        'SIO EVENT /chat "msg" ["hi",{"n":1}] id=5',
        "SIO DISCONNECT /chat",
        'SIO CONNECT /chat {"sid":"abc"}',
        'SIO CONNECT_ERROR /x {"message":"Invalid namespace"}',
        "SIO ACK /chat id=5 []",
        'SIO CONNECT_ERROR / "not allowed"',
    ]
    assert [r.kind for r in sio(records)] == [
        "connect", "connect", "event", "disconnect", "connect", "connect_error", "ack",
        "connect_error"]
    event = sio(records, "event")[0]
    assert (event.fields["namespace"], event.fields["event"], event.fields["args"]) \
        == ("/chat", "msg", ["hi", {"n": 1}])
    error = sio(records, "connect_error")[0]
    assert error.fields["data"] == {"message": "Invalid namespace"} and error.fields["args"] is None


def test_long_data_is_cut_in_the_summary():
    [record] = sio(websocket(['2["big","' + "x" * 200 + '"]']))
    assert record.summary == 'SIO EVENT / "big" ["' + "x" * 55 + '...'   # 60 characters of JSON
    assert record.fields["args"] == ["x" * 200]


def test_binary_event_attachments_joined():
    text = f'52-["upload",{{"pic":{PH0},"thumbs":[{PH1}]}}]'
    records = websocket([text, b"\x89PNG", b"\x00\x01"])
    assert errors(records) == []
    packet, first, second = sio(records)
    assert (packet.kind, first.kind, second.kind) == ("binary_event", "attachment", "attachment")
    assert packet.summary == 'SIO BINARY_EVENT / "upload" 2 attachments'
    # the packet's record holds the reconstructed data, at the packet's place in the stream
    assert packet.fields["data"] == ["upload", {"pic": b"\x89PNG", "thumbs": [b"\x00\x01"]}]
    assert packet.fields["args"] == [{"pic": b"\x89PNG", "thumbs": [b"\x00\x01"]}]
    assert packet.fields["attachments"] == [b"\x89PNG", b"\x00\x01"]
    assert (packet.fields["type"], packet.fields["type_name"], packet.fields["event"]) \
        == (5, "BINARY_EVENT", "upload")
    assert packet.fields["attachment_count"] == 2
    assert packet.raw == b"4" + text.encode() and packet.offset < first.offset < second.offset
    # the attachments point to it
    assert [(r.fields["packet"], r.fields["num"], r.fields["count"], r.fields["data"])
            for r in (first, second)] == [(0, 0, 2, b"\x89PNG"), (0, 1, 2, b"\x00\x01")]
    assert first.summary == 'SIO attachment num=0 of BINARY_EVENT / "upload": 4 bytes 89 50 4e 47'
    assert second.raw == b"\x00\x01"          # its Engine.IO message: the unmasked payload
    # obj: the completed packet, shared with the attachment records
    assert isinstance(packet.obj, BinaryPacket) and packet.obj is first.obj is second.obj
    assert packet.obj.complete
    assert packet.obj.packet == Packet(PacketType.EVENT,
                                       data=["upload", {"pic": b"\x89PNG", "thumbs": [b"\x00\x01"]}])
    assert packet.obj.header.data == ["upload", {"pic": {"_placeholder": True, "num": 0},
                                                 "thumbs": [{"_placeholder": True, "num": 1}]}]


def test_binary_ack_and_ids():
    records = websocket([f'51-/chat,9["up",{PH0}]', b"\x01"], [f"61-/chat,9[{PH0},2]", b"\xff"])
    assert errors(records) == []
    assert summaries(records) == [
        'SIO BINARY_EVENT /chat "up" 1 attachment id=9',
        'SIO attachment num=0 of BINARY_EVENT /chat "up": 1 byte 01',
        "SIO BINARY_ACK /chat id=9 1 attachment",
        "SIO attachment num=0 of BINARY_ACK /chat id=9: 1 byte ff",
    ]
    ack = sio(records, "binary_ack")[0]
    assert (ack.fields["id"], ack.fields["data"], ack.fields["args"], ack.fields["event"]) \
        == (9, [b"\xff", 2], [b"\xff", 2], None)


def test_placeholder_order_need_not_be_document_order():
    records = websocket([f'52-["x",{PH1},{PH0}]', b"a", b"b"])
    assert sio(records, "binary_event")[0].fields["args"] == [b"b", b"a"]


def test_lablib_encoding_round_trips_through_the_dissector():
    data = ["mixed", b"\x00", {"a": [1, b"\x01", {"b": b"\x02"}]}, [b"\x03"], "text"]
    messages = encode(Packet(PacketType.EVENT, "/ns", data, id=4))
    assert len(messages) == 5
    records = websocket(messages)
    [packet] = sio(records, "binary_event")
    assert packet.fields["data"] == data and packet.obj.packet.data == data
    assert packet.fields["attachments"] == deconstruct(data)[1] == [b"\x00", b"\x01", b"\x02", b"\x03"]
    assert [r.fields["num"] for r in sio(records, "attachment")] == [0, 1, 2, 3]


def test_each_direction_has_its_own_decoder():
    # c2s waits for an attachment while s2c sends text: no interference
    records = websocket([f'51-["x",{PH0}]', b"\x07"], ['2["y"]', '2["z"]'])
    assert errors(records) == []
    assert sio(records, "binary_event")[0].fields["args"] == [b"\x07"]
    assert [r.fields["packet"] for r in sio(records, direction="s2c")] == [0, 1]


# --- over long-polling ------------------------------------------------------------------------

def test_polling_payload_with_attachments():
    path = "/socket.io/?EIO=4&transport=polling&sid=S"
    body = "\x1e".join([f'451-["up",{PH0}]', "b" + base64.b64encode(b"\x01\x02").decode(),
                        '42["after"]'])
    request = format_request("POST", path, [("Host", "h"), ("Content-Length", str(len(body)))],
                             body.encode())
    response = format_response(200, [("Content-Length", "2")], b"ok")
    records = dissect_streams(request, response)
    assert errors(records) == []
    assert [r.kind for r in sio(records)] == ["binary_event", "attachment", "event"]
    packet, attachment, after = sio(records)
    assert packet.fields["args"] == [b"\x01\x02"] and attachment.fields["packet"] == 0
    assert attachment.raw == b"bAQI=" and after.fields["packet"] == 1


# --- bad input ----------------------------------------------------------------------------------

def test_errors_become_records_and_decoding_goes_on():
    records = websocket(['2["x"', b"\x01", "9", f'51-["lost",{PH0}]', '2["after"]',
                         f'52-["x",{PH0}]', '3["no id"]', "2" + "9" * 20 + '["x"]',
                         '2["disconnect"]', f'51-["x",{PH1}]', '2["ok"]'])
    assert summaries(records) == [
        "Socket.IO: data is not JSON: Expecting ',' delimiter: line 1 column 5 (char 4)",
        "Socket.IO: a binary message arrived but no attachment was expected",
        "Socket.IO: unknown packet type '9'",
        'SIO BINARY_EVENT / "lost" 1 attachment',
        "Socket.IO: a text packet arrived while 1 attachment(s) of packet 0 were still expected",
        'SIO EVENT / "after" []',
        'SIO BINARY_EVENT / "x" 2 attachments',
        "Socket.IO: a text packet arrived while 2 attachment(s) of packet 2 were still expected",
        "Socket.IO: a ACK packet needs an ack id",
        "Socket.IO: ack id too long (more than 2**53-1): '99999999999999999999'",
        "Socket.IO: 'disconnect' is a reserved event name",
        "Socket.IO: attachment placeholder num 1 out of range (the packet has 1 attachment)",
        'SIO EVENT / "ok" []',
    ]
    assert all(r.kind == "malformed" and r.fields["layer"] == "socketio" for r in errors(records))
    assert all(r.depth == 2 for r in errors(records))
    lost = sio(records, "binary_event")[0]
    assert lost.fields["attachments"] == [] and lost.fields["attachment_count"] == 1
    assert lost.fields["args"] == [{"_placeholder": True, "num": 0}] and not lost.obj.complete
    assert [r.fields["packet"] for r in sio(records)] == [0, 1, 2, 3]


def test_more_attachments_than_lablib_accepts_are_shown():
    # lablib's endpoints refuse more than 10; python-socketio sends any number
    data = ["many", *[bytes([i]) for i in range(12)]]
    records = websocket(encode(Packet(PacketType.EVENT, data=data)))
    assert errors(records) == []
    assert sio(records)[0].fields["data"] == data and len(sio(records, "attachment")) == 12


def test_state_lives_for_one_conversation():
    # a binary packet cut off at the end of one connection ...
    first = websocket([f'51-["x",{PH0}]'], eof=False)
    assert sio(first, "binary_event")[0].fields["attachment_count"] == 1
    # ... does not swallow a binary message of the next: a fresh decoder refuses it
    second = websocket([b"\x01"])
    assert summaries(second) == ["Socket.IO: a binary message arrived but no attachment was expected"]
    # the same holds for two conversations of one capture
    request, response = upgrade()
    conv = lambda i, msgs: Conversation(i, ("c", i), ("s", 80), [
        Chunk(float(i), "c2s", request + b"".join(frame(m, MASK) for m in msgs)),
        Chunk(float(i), "s2c", response)], end=float(i) + 0.5)
    records = dissect(conv(0, [f'451-["x",{PH0}]'])) + dissect(conv(1, [b"\x01"]))
    assert [r.kind for r in records if r.layer in ("socketio", "error")] == ["binary_event", "malformed"]


text_messages = st.one_of(
    st.text(max_size=30),
    st.builds(lambda t, rest: t + rest, st.sampled_from("0123456"),
              st.text(alphabet='0123456789-/,[]{}"_:placeholdertruenum ', max_size=40)),
    st.sampled_from([f'51-["x",{PH0}]', f'62-3[{PH0},{PH1}]', '2["e",1]', "0/a,{}", "310[]"]),
)
messages = st.lists(st.one_of(text_messages, st.binary(max_size=8)), max_size=12)


@FAST
@given(messages)
def test_the_decoder_never_raises(sequence):
    decoder = SocketIODecoder()
    for item in sequence:
        text = item if isinstance(item, str) else None
        data = item.encode("utf-8", "surrogatepass") if text is not None else item
        out = decoder(Message("engineio", data, text, "c2s", WS_TARGET))
        assert out and all(d.layer in ("socketio", "error") for d in out)
    # and through the whole dissector: no "decoder failed" records
    records = websocket(sequence)
    assert not [r for r in records if r.layer == "error" and r.kind == "decoder"]


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=5),
              st.binary(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8)


@FAST
@given(st.text(min_size=1, max_size=5).filter(lambda s: s not in ("connect", "disconnect")),
       st.lists(json_values, max_size=4), st.none() | st.integers(0, 1000))
def test_any_event_round_trips(name, args, ack_id):
    packet = Packet(PacketType.EVENT, "/", [name, *args], id=ack_id)
    records = websocket(encode(packet))
    assert errors(records) == []
    head = sio(records)[0]
    assert head.fields["data"] == packet.data and head.fields["id"] == ack_id
    assert head.fields["attachments"] == deconstruct(packet.data)[1]
    assert len(sio(records, "attachment")) == head.fields["attachment_count"]


# --- a live capture: python-socketio both sides, binary attachments, through the relay ----------

UPLOAD_META = {"name": "pic.png", "pic": b"\x89PNG\r\n", "thumbs": [b"\x00", {"small": b"\x01\x02"}]}
UPLOAD_RAW = b"top level"
DOWNLOAD = {"parts": [b"x", {"deep": [b"y", "not bytes"]}], "n": 2}


async def socketio_session(transports: list[str]):
    """python-socketio client -> relay -> python-socketio server; returns the capture."""
    socketio = pytest.importorskip("socketio")
    from aiohttp import web

    from lablib.capture.relay import Relay

    # Short heartbeat: python-engineio's polling client waits for its held GET when it disconnects.
    server = socketio.AsyncServer(async_mode="aiohttp", ping_interval=0.5, ping_timeout=1)
    downloads: asyncio.Queue = asyncio.Queue()

    @server.event
    async def connect(sid, environ, auth):
        if auth != {"token": "abc"}:
            return False

    @server.on("upload")
    async def upload(sid, meta, raw):
        await server.emit("download", DOWNLOAD, to=sid)
        return {"sizes": [len(meta["pic"]), len(raw)], "echo": raw}

    app = web.Application()
    server.attach(app)
    async with aiohttp_site(app) as port:
        async with Relay("127.0.0.1", port) as relay:
            client = socketio.AsyncClient()
            client.on("download", downloads.put)
            await client.connect(f"http://127.0.0.1:{relay.port}", transports=transports,
                                 auth={"token": "abc"})
            reply = await client.call("upload", (UPLOAD_META, UPLOAD_RAW), timeout=5)
            assert reply == {"sizes": [6, 9], "echo": UPLOAD_RAW}
            assert await downloads.get() == DOWNLOAD
            await client.disconnect()
            await relay.wait_idle()
    return relay.capture


def check_upload_session(records: list[Record]) -> None:
    assert errors(records) == []
    c2s = [r for r in sio(records, direction="c2s")]
    s2c = [r for r in sio(records, direction="s2c")]
    assert [r.kind for r in c2s][:6] == ["connect", "binary_event"] + ["attachment"] * 4
    assert {r.kind for r in c2s[6:]} <= {"disconnect"}   # python-socketio may not send it
    assert [r.kind for r in s2c].count("attachment") == 3
    assert [r.kind for r in s2c if r.kind != "attachment"] == ["connect", "binary_event", "binary_ack"] \
        or [r.kind for r in s2c if r.kind != "attachment"] == ["connect", "binary_ack", "binary_event"]
    connect, upload = c2s[0], c2s[1]
    assert connect.summary == 'SIO CONNECT / {"token":"abc"}'
    assert upload.summary == 'SIO BINARY_EVENT / "upload" 4 attachments id=1'
    # python-socketio took the bytes out in document order; the record has them back in place
    assert upload.fields["args"] == [UPLOAD_META, UPLOAD_RAW]
    assert upload.fields["attachments"] == [b"\x89PNG\r\n", b"\x00", b"\x01\x02", b"top level"]
    # numbered within the TCP connection: 1 over a WebSocket, 0 on a polling POST of its own
    number = upload.fields["packet"]
    assert [(r.fields["packet"], r.fields["num"]) for r in c2s[2:6]] == [(number, n) for n in range(4)]
    assert all(r.obj is upload.obj for r in c2s[2:6]) and upload.obj.complete
    [ack] = [r for r in s2c if r.kind == "binary_ack"]
    assert ack.fields["id"] == 1 and ack.fields["args"] == [{"sizes": [6, 9], "echo": UPLOAD_RAW}]
    assert ack.summary == "SIO BINARY_ACK / id=1 1 attachment"
    [download] = [r for r in s2c if r.kind == "binary_event"]
    assert download.fields["event"] == "download" and download.fields["args"] == [DOWNLOAD]
    assert download.fields["attachments"] == [b"x", b"y"]
    for packet in (ack, download):
        mine = [r for r in s2c if r.kind == "attachment" and r.obj is packet.obj]
        assert [r.fields["num"] for r in mine] == list(range(packet.fields["attachment_count"]))


@pytest.mark.interop
@asyncio_test(timeout=20.0)
async def test_python_socketio_websocket_through_the_relay():
    capture = await socketio_session(["websocket"])
    records = dissect_capture(capture)
    check_upload_session(records)
    # every attachment travelled as a WebSocket binary frame of its own
    frames = [r for r in records if r.layer == "websocket" and r.kind == "frame"
              and r.fields["opcode_name"] == "BINARY"]
    assert len(frames) == 7


@pytest.mark.interop
@asyncio_test(timeout=20.0)
async def test_python_socketio_polling_through_the_relay():
    capture = await socketio_session(["polling"])
    records = dissect_capture(capture)
    check_upload_session(records)
    attachments = sio(records, "attachment")
    assert all(r.raw.startswith(b"b") for r in attachments)     # "b" + base64 in the payload
