"""The dissector's Engine.IO layer (lablib/engineio/dissect.py): polling bodies and WebSocket
messages shown as Engine.IO packets, the upgrade probe recognised, bad input as error records."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lablib.capture.dissect import DECODERS, Message, Record, dissect_capture, dissect_streams
from lablib.capture.pcap import read_pcap
from lablib.engineio.dissect import decode_engineio, engineio_query
from lablib.engineio.packets import Packet, PacketType, encode_payload
from lablib.http import format_request, format_response
from lablib.websocket.frames import Opcode, encode_frame
from lablib.websocket.handshake import accept_key
from tests.aio_support import aiohttp_site, asyncio_test

ROOT = Path(__file__).resolve().parents[2]
SOCKETIO_ECHO = ROOT / "captures" / "socketio-echo.pcap"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"
SID = "AAAAAAAAAAAAAAAAAAAA"
OPEN_BODY = ('0{"sid":"' + SID + '","upgrades":["websocket"],"pingInterval":25000,'
             '"pingTimeout":20000,"maxPayload":1000000}')


# --- helpers ------------------------------------------------------------------------------------

def eio(records: list[Record], kind: str | None = None, direction: str | None = None) -> list[Record]:
    return [r for r in records if r.layer == "engineio" and (kind is None or r.kind == kind)
            and (direction is None or r.direction == direction)]


def errors(records: list[Record]) -> list[Record]:
    return [r for r in records if r.layer == "error"]


def get(target: str) -> bytes:
    return format_request("GET", target, [("Host", "127.0.0.1:8080")])


def post(target: str, body: str | bytes) -> bytes:
    body = body.encode() if isinstance(body, str) else body
    return format_request("POST", target, [("Host", "127.0.0.1:8080"),
                                           ("Content-Type", "text/plain;charset=UTF-8"),
                                           ("Content-Length", str(len(body)))], body)


def reply(body: str | bytes, status: int = 200, content_type: str = "text/plain; charset=UTF-8") -> bytes:
    body = body.encode() if isinstance(body, str) else body
    return format_response(status, [("Content-Type", content_type),
                                     ("Content-Length", str(len(body)))], body)


def polling(exchanges: list[tuple[bytes, bytes]]) -> list[Record]:
    """Dissect a keep-alive connection carrying these request/response pairs."""
    return dissect_streams(b"".join(q for q, _ in exchanges), b"".join(a for _, a in exchanges))


def websocket(target: str, c2s_frames: list[tuple[Opcode, bytes]],
              s2c_frames: list[tuple[Opcode, bytes]]) -> list[Record]:
    """Dissect an upgrade to ``target`` followed by these frames."""
    request = format_request("GET", target, [
        ("Host", "127.0.0.1:8080"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")])
    response = format_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                     ("Sec-WebSocket-Accept", accept_key(KEY))])
    c2s = request + b"".join(encode_frame(op, data, masking_key=MASK) for op, data in c2s_frames)
    s2c = response + b"".join(encode_frame(op, data) for op, data in s2c_frames)
    return dissect_streams(c2s, s2c)


def text(s: str) -> tuple[Opcode, bytes]:
    return (Opcode.TEXT, s.encode())


# --- which traffic is Engine.IO -----------------------------------------------------------------

def test_the_decoder_is_among_the_default_decoders():
    assert "engineio" in [d.name for d in DECODERS]
    decoder = next(d for d in DECODERS if d.name == "engineio")
    assert decoder.carriers == {"http", "websocket"}


@pytest.mark.parametrize("target, expected", [
    ("/engine.io/?EIO=4&transport=polling", {"EIO": "4", "transport": "polling"}),
    ("/socket.io/?EIO=4&transport=websocket&sid=abc", {"EIO": "4", "transport": "websocket", "sid": "abc"}),
    ("/socket.io?EIO=4&transport=polling", {"EIO": "4", "transport": "polling"}),
    ("/app/socket.io/?transport=polling&EIO=4&t=N", {"EIO": "4", "transport": "polling", "t": "N"}),
    ("/socket.io/?EIO=3&transport=polling", None),   # protocol v3: not ours
    ("/socket.io/?transport=polling", None),
    ("/chat?EIO=4&transport=polling", None),
    ("/engine.iox/?EIO=4", None),
    ("", None),
    (None, None),
])
def test_engineio_query(target, expected):
    assert engineio_query(target) == expected


def test_other_traffic_is_left_alone():
    records = polling([(get("/chat?EIO=4&transport=polling"), reply(OPEN_BODY)),
                       (get("/socket.io/?EIO=3&transport=polling"), reply(OPEN_BODY))])
    assert eio(records) == [] and errors(records) == []
    # a WebSocket whose upgrade request was not an Engine.IO one
    records = websocket("/chat", [text("2probe")], [text("3probe")])
    assert eio(records) == [] and errors(records) == []
    # text frames on a polling target cannot happen; the decoder still says "not mine"
    message = Message("websocket", b"4hi", "4hi", "c2s", "/socket.io/?EIO=4&transport=polling")
    assert decode_engineio(message) is None


# --- the shipped capture: python-socketio, polling then the upgrade ----------------------------

@pytest.mark.skipif(not SOCKETIO_ECHO.exists(), reason="captures/socketio-echo.pcap not shipped")
def test_socketio_echo_capture():
    records = dissect_capture(read_pcap(SOCKETIO_ECHO))
    assert errors(records) == []
    packets = eio(records)
    assert all(r.depth == 1 for r in packets)

    # the open packet, once, in the body of the handshake GET's response
    [open_] = eio(records, "open")
    assert open_.direction == "s2c" and open_.fields["transport"] == "polling"
    sid = open_.fields["sid"]
    assert len(sid) == 20
    assert (open_.fields["type"], open_.fields["type_name"]) == (0, "OPEN")
    assert (open_.fields["upgrades"], open_.fields["pingInterval"], open_.fields["pingTimeout"],
            open_.fields["maxPayload"]) == (["websocket"], 25000, 20000, 1_000_000)
    assert open_.summary == (f"EIO open sid={sid} upgrades=[websocket] pingInterval=25000 "
                             "pingTimeout=20000 maxPayload=1000000")
    assert open_.raw.startswith(b'0{"sid":"' + sid.encode() + b'"')

    # the probe pair, the upgrade, the noop: in this order, on the WebSocket of the same sid
    upgrade_kinds = [(r.direction, r.kind, r.fields["data"]) for r in packets
                     if r.kind in ("probe", "upgrade", "noop")]
    assert upgrade_kinds == [("c2s", "probe", "probe"), ("s2c", "probe", "probe"),
                             ("c2s", "upgrade", None), ("s2c", "noop", None)]
    ping, pong = eio(records, "probe")
    assert (ping.fields["type_name"], pong.fields["type_name"]) == ("PING", "PONG")
    assert ping.summary == 'EIO ping "probe" (upgrade probe)'
    assert pong.summary == 'EIO pong "probe" (probe answered)'
    assert {r.fields["sid"] for r in packets if r.fields["transport"] == "websocket"} == {sid}
    assert [r.summary for r in eio(records, "upgrade")] == ["EIO upgrade"]
    assert [r.summary for r in eio(records, "noop")] == ["EIO noop"]

    # the Socket.IO packets ride in Engine.IO messages, both ways
    c2s = [r.fields["data"] for r in eio(records, "message", "c2s")]
    s2c = [r.fields["data"] for r in eio(records, "message", "s2c")]
    assert c2s == ["0{}", '2["echo","Hello"]', '21["echo","Hello with an ack"]']
    assert s2c[0].startswith('0{"sid":"') and s2c[1:] == [
        '2["echo","Hello"]', '2["echo","Hello with an ack"]', '31["Hello with an ack"]']
    assert [r.summary for r in eio(records, "message", "c2s")][:2] == [
        'EIO message "0{}"', """EIO message '2["echo","Hello"]'"""]
    # nothing else: 1 open + 2 probes + upgrade + noop + 3 + 4 messages
    assert len(packets) == 12


# --- polling ------------------------------------------------------------------------------------

def test_polling_session_packets_ok_and_raw_slices():
    path = "/engine.io/?EIO=4&transport=polling"
    records = polling([
        (get(path + "&t=1"), reply(OPEN_BODY)),
        (post(path + f"&sid={SID}", "4hello\x1ebAQIDBA==\x1e4h\u00e9 \u20ac"), reply("ok", content_type="text/html")),
        (get(path + f"&sid={SID}"), reply("2\x1e4\x1e6")),
        (post(path + f"&sid={SID}", "3"), reply("OK")),       # python-engineio's spelling
    ])
    assert errors(records) == []
    kinds = [(r.direction, r.kind) for r in eio(records)]
    assert kinds == [("s2c", "open"),
                     ("c2s", "message"), ("c2s", "message"), ("c2s", "message"), ("s2c", "ok"),
                     ("s2c", "ping"), ("s2c", "message"), ("s2c", "noop"),
                     ("c2s", "pong"), ("s2c", "ok")]
    [open_] = eio(records, "open")
    assert open_.fields["sid"] == SID and open_.raw == OPEN_BODY.encode()

    hello, binary, accents = eio(records, "message", "c2s")
    assert [r.raw for r in (hello, binary, accents)] == [b"4hello", b"bAQIDBA==", "4h\u00e9 \u20ac".encode()]
    assert [(r.fields["index"], r.fields["count"]) for r in (hello, binary, accents)] == \
        [(0, 3), (1, 3), (2, 3)]
    assert all(r.fields["sid"] == SID and r.fields["transport"] == "polling"
               for r in (hello, binary, accents))
    assert hello.fields["data"] == "hello" and hello.summary == 'EIO message "hello"'
    assert hello.obj == Packet(PacketType.MESSAGE, "hello")
    assert binary.fields["data"] == b"\x01\x02\x03\x04" and binary.fields["binary"] is True
    assert binary.summary == "EIO message binary (base64) 4 bytes 01 02 03 04"
    assert accents.fields["data"] == "h\u00e9 \u20ac"

    ping, empty, noop = eio(records, direction="s2c")[2:5]
    assert (ping.summary, ping.fields["data"]) == ("EIO ping", None)
    assert (empty.summary, empty.fields["data"]) == ('EIO message ""', "")
    assert noop.summary == "EIO noop"
    oks = eio(records, "ok")
    assert [r.fields["body"] for r in oks] == ["ok", "OK"]
    assert oks[0].summary == "EIO ok (the POST was accepted)"


def test_message_packets_carry_the_inner_message():
    seen: list[Message] = []
    from lablib.capture.dissect import Decoder
    from lablib.engineio.dissect import decode_engineio as engineio

    def spy(message: Message):
        seen.append(message)
        return []

    decoders = [Decoder("engineio", frozenset({"http", "websocket"}), engineio),
                Decoder("spy", frozenset({"engineio"}), spy)]
    target = f"/socket.io/?EIO=4&transport=polling&sid={SID}"
    dissect_streams(post(target, "40\x1ebAQI=\x1e2\x1e4\u20ac"), reply("ok"), decoders=decoders)
    assert [(m.carrier, m.data, m.text, m.direction, m.target) for m in seen] == [
        ("engineio", b"0", "0", "c2s", target),
        ("engineio", b"\x01\x02", None, "c2s", target),
        ("engineio", "\u20ac".encode(), "\u20ac", "c2s", target),
    ]
    assert seen[1].obj == Packet(PacketType.MESSAGE, b"\x01\x02")


def test_error_answers():
    path = "/engine.io/?EIO=4&transport=polling"
    records = polling([
        (get(path + "&sid=nope"), reply('{"code":1,"message":"Session ID unknown"}', 400,
                                        "application/json")),
        (get(path.replace("polling", "carrier-pigeon")),
         reply('{"code":0,"message":"Transport unknown"}', 400, "application/json")),
        (get(path + "&sid=x"), reply("Invalid session", 400, "text/plain")),   # python-engineio
        (get(path), reply('{"code":4,"message":"Forbidden"}', 403, "application/json")),
    ])
    assert errors(records) == []
    found = [(r.fields["status"], r.fields["code"], r.fields["message"], r.fields["json"])
             for r in eio(records, "error")]
    assert found == [(400, 1, "Session ID unknown", True), (400, 0, "Transport unknown", True),
                     (400, None, "Invalid session", False), (403, 4, "Forbidden", True)]
    assert [r.summary for r in eio(records, "error")][::2] == [
        'EIO error 1 "Session ID unknown" (HTTP 400)', 'EIO error "Invalid session" (HTTP 400)']


# --- WebSocket ----------------------------------------------------------------------------------

def test_websocket_only_session():
    records = websocket("/engine.io/?EIO=4&transport=websocket",
                        [text("4hi"), (Opcode.BINARY, b"\x00\xff"), text("3"), text("1")],
                        [text(OPEN_BODY), text("2"), (Opcode.BINARY, b""), text("4" + "x" * 50)])
    assert errors(records) == []
    assert [(r.direction, r.kind) for r in eio(records)] == [
        ("c2s", "message"), ("c2s", "message"), ("c2s", "pong"), ("c2s", "close"),
        ("s2c", "open"), ("s2c", "ping"), ("s2c", "message"), ("s2c", "message")]
    hi, binary = eio(records, "message", "c2s")
    assert hi.fields["transport"] == "websocket" and hi.fields["sid"] is None
    assert binary.fields["data"] == b"\x00\xff" and binary.raw == b"\x00\xff"
    assert binary.summary == "EIO message binary 2 bytes 00 ff"
    empty, long = eio(records, "message", "s2c")
    assert (empty.fields["data"], empty.summary) == (b"", "EIO message binary 0 bytes")
    assert long.summary == 'EIO message "' + "x" * 37 + '..."'
    [open_] = eio(records, "open")
    assert open_.fields["sid"] == SID and open_.fields["transport"] == "websocket"


def test_upgrade_probe_on_the_websocket():
    target = f"/socket.io/?EIO=4&transport=websocket&sid={SID}"
    records = websocket(target, [text("2probe"), text("5"), text('42["after"]')],
                        [text("3probe"), text("6"), text("2")])
    assert errors(records) == []
    assert [(r.direction, r.kind, r.fields["type"]) for r in eio(records)] == [
        ("c2s", "probe", 2), ("c2s", "upgrade", 5), ("c2s", "message", 4),
        ("s2c", "probe", 3), ("s2c", "noop", 6), ("s2c", "ping", 2)]
    assert all(r.fields.get("probe") is True for r in eio(records, "probe"))
    assert all(r.fields["sid"] == SID for r in eio(records))


# --- bad input: an error record, never an exception ---------------------------------------------

@pytest.mark.parametrize("body, reason", [
    (b"xyz", "unknown packet type 'x'"),
    (b"4a\x1e\x1e4b", "empty packet"),
    (b"bAQ", "malformed base64"),
    (b"b!!!!", "malformed base64"),
    (b"0{\"sid\":\"ab", "open packet"),                 # truncated JSON
    (b"0[1,2]", "open packet"),
    (b"\xff\xfe4hi", "not UTF-8"),
])
def test_garbage_polling_bodies(body, reason):
    records = polling([(get(f"/engine.io/?EIO=4&transport=polling&sid={SID}"), reply(body))])
    [error] = errors(records)
    assert (error.kind, error.depth, error.direction) == ("malformed", 1, "s2c")
    assert reason in error.summary and error.summary.startswith("Engine.IO: ")
    assert error.fields["layer"] == "engineio"
    assert eio(records) == []


def test_garbage_websocket_messages():
    records = websocket("/engine.io/?EIO=4&transport=websocket", [text(""), text("9"), text("bA")],
                        [(Opcode.TEXT, b"\xc3\x28")])
    assert eio(records) == []
    found = [(r.direction, r.kind, r.summary) for r in errors(records)]
    assert found[:3] == [("c2s", "malformed", "Engine.IO: cannot decode packet: empty packet"),
                         ("c2s", "malformed", "Engine.IO: cannot decode packet: unknown packet type '9'"),
                         ("c2s", "malformed", "Engine.IO: cannot decode packet: binary packet with malformed base64")]
    # the invalid UTF-8 text frame: the WebSocket layer's violation, and no Engine.IO guess
    assert found[3:] == [("s2c", "violation", "text message is not valid UTF-8 (§8.1)"),
                         ("s2c", "malformed", "Engine.IO: a text message that is not UTF-8")]


def test_truncated_body_is_the_http_layers_business():
    body = OPEN_BODY.encode()
    s2c = reply(body)[:-10]    # Content-Length promises 10 bytes more than arrive
    records = dissect_streams(get("/engine.io/?EIO=4&transport=polling"), s2c)
    assert eio(records) == []
    assert [(r.layer, r.kind) for r in errors(records)] == [("error", "truncated")]


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=64),
                      st.text(alphabet=st.sampled_from("0123456b{}\":,ok\x1eéAQ=x"), max_size=40)),
       status=st.sampled_from([None, 200, 400, 500]),
       carrier=st.sampled_from(["http", "websocket"]))
def test_decoder_never_raises(body, status, carrier):
    data = body.encode() if isinstance(body, str) else body
    try:
        text_ = data.decode("utf-8")
    except UnicodeDecodeError:
        text_ = None
    transport = "websocket" if carrier == "websocket" else "polling"
    obj = None if status is None else type("R", (), {"status": status})()
    message = Message(carrier, data, text_, "s2c", f"/engine.io/?EIO=4&transport={transport}",
                      None, obj)
    for item in decode_engineio(message) or []:
        assert item.layer in ("engineio", "error")
        if item.layer == "error":
            assert item.kind == "malformed" and item.summary.startswith("Engine.IO: ")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.builds(Packet, st.just(PacketType.MESSAGE),
              st.one_of(st.text().filter(lambda s: "\x1e" not in s), st.binary(max_size=20))),
    st.builds(Packet, st.sampled_from([PacketType.PING, PacketType.PONG, PacketType.NOOP,
                                       PacketType.CLOSE, PacketType.UPGRADE]),
              st.sampled_from([None, "probe"]))), min_size=1, max_size=6))
def test_any_payload_dissects_to_its_packets(packets):
    body = encode_payload(packets)
    # /engine.io/: arbitrary messages, which the Socket.IO decoder (for /socket.io/) would refuse
    records = dissect_streams(post(f"/engine.io/?EIO=4&transport=polling&sid={SID}", body), b"")
    found = eio(records)
    assert errors([r for r in records if r.depth > 0]) == []
    assert [r.obj for r in found] == packets
    assert b"\x1e".join(r.raw for r in found) == body.encode("utf-8", "surrogatepass")
    assert [r.fields["index"] for r in found] == list(range(len(packets)))


# --- a live capture: python-engineio, polling only, through the recording relay ----------------

@pytest.mark.interop
@asyncio_test(timeout=20.0)
async def test_python_engineio_polling_through_the_relay():
    engineio = pytest.importorskip("engineio")
    from aiohttp import web

    from lablib.capture.relay import Relay

    server = engineio.AsyncServer(async_mode="aiohttp", ping_interval=5, ping_timeout=5)

    @server.on("message")
    async def echo(sid, data):
        await server.send(sid, data)

    app = web.Application()
    server.attach(app)
    async with aiohttp_site(app) as port:
        async with Relay("127.0.0.1", port) as relay:
            client = engineio.AsyncClient()
            echoes: asyncio.Queue = asyncio.Queue()
            client.on("message", echoes.put)
            await client.connect(f"http://127.0.0.1:{relay.port}", transports=["polling"])
            for data in ("hello", "h\u00e9llo \u20ac", b"\x00\x01\x02\xff"):
                await client.send(data)
                assert await echoes.get() == data
            await client.disconnect()
            await relay.wait_idle()
    records = dissect_capture(relay.capture)
    assert errors(records) == []
    [open_] = eio(records, "open")
    sid = open_.fields["sid"]
    assert open_.fields["upgrades"] == ["websocket"]
    assert (open_.fields["pingInterval"], open_.fields["pingTimeout"]) == (5000, 5000)
    sent = [r.fields["data"] for r in eio(records, "message", "c2s")]
    back = [r.fields["data"] for r in eio(records, "message", "s2c")]
    assert sent == back == ["hello", "h\u00e9llo \u20ac", b"\x00\x01\x02\xff"]
    binary = eio(records, "message", "c2s")[2]
    assert binary.raw == b"b" + base64.b64encode(b"\x00\x01\x02\xff")
    # every POST got python-engineio's "OK", which is not a packet
    posts = [r for r in records if r.layer == "http" and r.kind == "request"
             and r.fields["method"] == "POST"]
    assert len(eio(records, "ok")) == len(posts) >= 4          # 3 messages and the close
    assert [r.fields["body"] for r in eio(records, "ok")] == ["OK"] * len(posts)
    # the client's close packet rode on a POST of the same session
    [close] = eio(records, "close", "c2s")
    assert close.fields["sid"] == sid and close.fields["transport"] == "polling"
