"""The reference captures in ``captures/``: what each file holds, field by field, and what tshark
says about the same bytes.

The files are made by ``scripts/make_reference_captures.py``.  If you regenerate them, these
tests tell you what changed (session ids and timestamps may change; everything asserted here
should not, unless a library changed its behaviour — then update the test *and* the README).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from lablib.capture.dissect import Record, dissect_capture
from lablib.capture.pcap import EPOCH, dumps_pcap, read_pcap, write_pcap
from lablib.websocket.frames import apply_mask
from lablib.websocket.handshake import accept_key
from scripts.make_reference_captures import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
NAMES = ["ws-echo-websockets", "ws-echo-lablib", "ws-bad-input", "socketio-echo"]
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None, reason="tshark is not installed (apt-get install -y --no-install-recommends "
                           "tshark); the lablib side of these captures is tested without it")

LONG_TEXT = "lorem ipsum " * 25


# --- helpers ------------------------------------------------------------------------------------

def load(name: str) -> tuple[list, list[Record]]:
    """(conversations, records) of a shipped capture."""
    capture = read_pcap(CAPTURES / f"{name}.pcap")
    return capture.conversations, dissect_capture(capture)


def pick(records: list[Record], layer: str, kind: str, direction: str | None = None,
         depth: int = 0) -> list[Record]:
    return [r for r in records if r.layer == layer and r.kind == kind and r.depth == depth
            and (direction is None or r.direction == direction)]


def frames(records: list[Record], direction: str) -> list[dict]:
    """The fields of every WebSocket frame one side sent, in order."""
    return [r.fields for r in pick(records, "websocket", "frame", direction)]


def headers(record: Record) -> dict[str, str]:
    return {name.lower(): value for name, value in record.fields["headers"]}


def shape(fields: list[dict]) -> list[tuple[str, int, int, int]]:
    """(opcode_name, fin, mask, payload_len) per frame: the columns tshark also shows."""
    return [(f["opcode_name"], f["fin"], f["mask"], f["payload_len"]) for f in fields]


# --- every file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_each_file_is_small_and_dissects_without_errors(name):
    path = CAPTURES / f"{name}.pcap"
    assert path.stat().st_size < 50_000
    conversations, records = load(name)
    assert [(c.client, c.server) for c in conversations] == \
        [(("127.0.0.1", 50000), ("127.0.0.1", 8080))]
    assert not conversations[0].reset
    if name != "ws-bad-input":     # that one is *meant* to hold a malformed frame
        assert pick(records, "error", "malformed") == []
        assert [r for r in records if r.layer == "error"] == []
    # both masking rules hold (§5.1): every client frame masked, no server frame
    assert {f["mask"] for f in frames(records, "c2s")} == {1}
    assert {f["mask"] for f in frames(records, "s2c")} == {0}
    for f in frames(records, "c2s"):
        assert len(f["masking_key"]) == 4
        assert apply_mask(f["masked_payload"], f["masking_key"]) == f["payload"]
    assert all(f["masking_key"] is None for f in frames(records, "s2c"))


@pytest.mark.parametrize("name", NAMES)
def test_each_file_is_what_the_writer_makes_of_its_own_conversation(name):
    """Read back and written again, a shipped file comes out byte for byte: the pcap writer
    still makes these files (same headers, checksums, timestamps), whatever builds the packets."""
    raw = (CAPTURES / f"{name}.pcap").read_bytes()
    assert dumps_pcap(read_pcap(raw, t0=EPOCH)) == raw


# --- ws-echo-websockets -------------------------------------------------------------------------

def check_upgrade(records: list[Record]) -> tuple[Record, Record]:
    [request] = pick(records, "http", "request")
    [response] = pick(records, "http", "response")
    assert (request.fields["method"], request.fields["target"]) == ("GET", "/echo")
    h = headers(request)
    assert (h["upgrade"].lower(), h["sec-websocket-version"]) == ("websocket", "13")
    assert h["host"] == "127.0.0.1:8080"
    assert (response.fields["status"], response.fields["reason"]) == (101, "Switching Protocols")
    assert response.fields["accept_ok"] is True
    assert headers(response)["sec-websocket-accept"] == accept_key(h["sec-websocket-key"])
    return request, response


def test_ws_echo_websockets_frames():
    _, records = load("ws-echo-websockets")
    check_upgrade(records)
    c2s, s2c = frames(records, "c2s"), frames(records, "s2c")
    # websockets sends a fragmented message from an iterable: it cannot know which fragment is
    # the last, so it ends the message with an empty CONT frame with FIN=1.
    assert shape(c2s) == [("TEXT", 1, 1, 5), ("BINARY", 1, 1, 6), ("TEXT", 1, 1, 300),
                          ("TEXT", 0, 1, 4), ("CONT", 0, 1, 4), ("CONT", 0, 1, 2),
                          ("CONT", 1, 1, 0), ("PING", 1, 1, 14), ("CLOSE", 1, 1, 5)]
    assert shape(s2c) == [("TEXT", 1, 0, 5), ("BINARY", 1, 0, 6), ("TEXT", 1, 0, 300),
                          ("TEXT", 1, 0, 10), ("PONG", 1, 0, 14), ("CLOSE", 1, 0, 5)]
    assert [f["payload"] for f in s2c[:4]] == [b"Hello", bytes.fromhex("000102fdfeff"),
                                               LONG_TEXT.encode(), b"Fragmented"]
    assert pick(records, "websocket", "frame", "s2c")[0].raw == b"\x81\x05Hello"
    assert [f["payload"] for f in c2s[3:7]] == [b"Frag", b"ment", b"ed", b""]
    [message] = pick(records, "websocket", "message", "c2s", depth=1)
    assert (message.fields["frames"], message.fields["text"]) == (4, "Fragmented")
    assert c2s[7]["payload"] == s2c[4]["payload"] == b"are you there?"   # a pong echoes its ping
    for close in (c2s[-1], s2c[-1]):
        assert (close["close_code"], close["close_code_name"], close["close_reason"]) == \
            (1000, "NORMAL_CLOSURE", "bye")


def test_ws_echo_websockets_has_one_16_bit_length_frame_each_way():
    _, records = load("ws-echo-websockets")
    for direction, header_len, first_bytes in (("c2s", 8, b"\x81\xfe\x01\x2c"),
                                               ("s2c", 4, b"\x81\x7e\x01\x2c")):
        [long] = [r for r in pick(records, "websocket", "frame", direction)
                  if r.fields["payload_len_field"] == 126]
        assert long.fields["extended_payload_len"] == 300
        assert long.fields["header_len"] == header_len      # 2 + 2 (+ 4 masking key)
        assert long.raw[:4] == first_bytes                  # 0x012c = 300
        assert long.length == header_len + 300
        # every other frame fits the 7-bit length
        others = [r for r in pick(records, "websocket", "frame", direction) if r is not long]
        assert all(r.fields["extended_payload_len"] is None for r in others)


# --- ws-echo-lablib -----------------------------------------------------------------------------

def test_ws_echo_lablib_frames():
    _, records = load("ws-echo-lablib")
    check_upgrade(records)
    c2s, s2c = frames(records, "c2s"), frames(records, "s2c")
    # lablib knows the list of fragments, so the last one carries FIN=1 (no empty frame)
    assert shape(c2s) == [("TEXT", 1, 1, 5), ("BINARY", 1, 1, 6), ("TEXT", 1, 1, 300),
                          ("TEXT", 0, 1, 4), ("CONT", 0, 1, 4), ("CONT", 1, 1, 2),
                          ("PING", 1, 1, 14), ("CLOSE", 1, 1, 5)]
    # lablib's server answers a close with the code only (§5.5.1 lets the reason go)
    assert shape(s2c) == [("TEXT", 1, 0, 5), ("BINARY", 1, 0, 6), ("TEXT", 1, 0, 300),
                          ("TEXT", 1, 0, 10), ("PONG", 1, 0, 14), ("CLOSE", 1, 0, 2)]
    assert (c2s[-1]["close_code"], c2s[-1]["close_reason"]) == (1000, "bye")
    assert (s2c[-1]["close_code"], s2c[-1]["close_reason"]) == (1000, "")
    [message] = pick(records, "websocket", "message", "c2s", depth=1)
    assert (message.fields["frames"], message.fields["text"]) == (3, "Fragmented")
    # the application bytes match the websockets capture, frame by frame, one way
    _, reference = load("ws-echo-websockets")
    assert [f["payload"] for f in s2c[:5]] == [f["payload"] for f in frames(reference, "s2c")[:5]]


def test_ws_echo_lablib_is_reproducible():
    """Seeded rngs: a new recording has the same key and the same masking keys, byte for byte."""
    _, shipped = load("ws-echo-lablib")
    capture, _ = asyncio.run(asyncio.wait_for(SCENARIOS["ws-echo-lablib"](), 30))
    fresh = dissect_capture(capture)
    key = [headers(r)["sec-websocket-key"] for r in (pick(shipped, "http", "request")[0],
                                                     pick(fresh, "http", "request")[0])]
    assert key[0] == key[1]
    assert [f["masking_key"] for f in frames(fresh, "c2s")] == \
        [f["masking_key"] for f in frames(shipped, "c2s")]
    assert [r.raw for r in pick(fresh, "websocket", "frame")] == \
        [r.raw for r in pick(shipped, "websocket", "frame")]


# --- ws-bad-input -------------------------------------------------------------------------------

def test_ws_bad_input_reserved_opcode_gets_1002():
    conversations, records = load("ws-bad-input")
    request, response = check_upgrade(records)
    assert headers(request)["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
    assert headers(response)["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    [hello] = pick(records, "websocket", "frame", "c2s")
    assert hello.raw == bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")   # RFC 6455 §5.7
    assert (hello.fields["masking_key"], hello.fields["payload"]) == (b"\x37\xfa\x21\x3d",
                                                                      b"Hello")
    [bad] = pick(records, "error", "malformed", "c2s")
    assert bad.raw == bytes.fromhex("83 80 37 fa 21 3d")
    assert "reserved opcode 0x3" in bad.summary
    echo, close = pick(records, "websocket", "frame", "s2c")
    assert echo.raw == b"\x81\x05Hello"
    assert (close.fields["close_code"], close.fields["close_code_name"],
            close.fields["close_reason"]) == (1002, "PROTOCOL_ERROR", "reserved opcode 0x3")
    assert close.raw[:4] == b"\x88\x15\x03\xea"       # CLOSE, 21 bytes, 0x03ea = 1002
    assert bad.time <= close.time
    assert conversations[0].closed_by == "s2c"       # the server closed TCP first (§7.1.1)


# --- socketio-echo ------------------------------------------------------------------------------

def texts(records: list[Record], direction: str) -> list[str]:
    return [f["payload"].decode() for f in frames(records, direction) if f["opcode_name"] == "TEXT"]


def test_socketio_echo_polling_then_upgrade():
    _, records = load("socketio-echo")
    requests = pick(records, "http", "request")
    responses = pick(records, "http", "response")
    queries = [parse_qs(urlsplit(r.fields["target"]).query) for r in requests]
    assert all(urlsplit(r.fields["target"]).path == "/socket.io/" for r in requests)
    assert all(q["EIO"] == ["4"] for q in queries)
    # python-engineio's client polls once (the handshake), then upgrades at once
    assert [q["transport"] for q in queries] == [["polling"], ["websocket"]]
    assert [r.fields["status"] for r in responses] == [200, 101]
    # the Engine.IO open packet (type 0) in the body of the first polling response
    body = responses[0].fields["body"]
    assert body.startswith(b'0{"sid":"')
    handshake = json.loads(body[1:])
    assert handshake["upgrades"] == ["websocket"]
    assert (handshake["pingInterval"], handshake["pingTimeout"], handshake["maxPayload"]) == \
        (25000, 20000, 1000000)
    assert headers(responses[0])["content-type"].startswith("text/plain")
    # the upgrade request names the session it upgrades
    assert "sid" not in queries[0]
    assert queries[1]["sid"] == [handshake["sid"]]
    assert headers(requests[1])["upgrade"].lower() == "websocket"
    assert responses[1].fields["accept_ok"] is True


def test_socketio_echo_websocket_frames():
    _, records = load("socketio-echo")
    c2s, s2c = texts(records, "c2s"), texts(records, "s2c")
    assert c2s == ["2probe", "5", "40{}", '42["echo","Hello"]',
                   '421["echo","Hello with an ack"]']
    assert s2c[:2] == ["3probe", "6"]
    assert s2c[2].startswith('40{"sid":"')
    assert s2c[3:] == ['42["echo","Hello"]', '42["echo","Hello with an ack"]',
                       '431["Hello with an ack"]']
    # the Socket.IO session id (in 40) is not the Engine.IO one (in the open packet)
    engineio_sid = json.loads(pick(records, "http", "response")[0].fields["body"][1:])["sid"]
    assert json.loads(s2c[2][2:])["sid"] != engineio_sid
    # the client's disconnect packet 41 never reaches the wire: python-engineio closes the
    # WebSocket before its writer task has sent the queued packets
    assert not any(t.startswith("41") or t == "1" for t in c2s)
    closes = [f for d in ("c2s", "s2c") for f in frames(records, d) if f["opcode_name"] == "CLOSE"]
    assert [(f["close_code"], f["close_reason"]) for f in closes] == [(1000, ""), (1000, "")]


# --- the command line ---------------------------------------------------------------------------

def test_cli_dissects_a_shipped_capture():
    result = subprocess.run([sys.executable, "-m", "lablib", "dissect", "--times", "none",
                             str(CAPTURES / "ws-echo-websockets.pcap")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "127.0.0.1:50000 -> 127.0.0.1:8080" in out
    for line in ("GET /echo HTTP/1.1 [Upgrade: websocket]", "HTTP/1.1 101 Switching Protocols",
                 "TEXT fin=1 mask=1 len=5 'Hello'", "TEXT fin=1 mask=0 len=5 'Hello'",
                 "BINARY fin=1 mask=0 len=6 00 01 02 fd fe ff", "TEXT fin=1 mask=0 len=300",
                 "CONT fin=1 mask=1 len=0", "TEXT message, 4 frames, 10 bytes: 'Fragmented'",
                 "PONG fin=1 mask=0 len=14", "CLOSE fin=1 mask=0 len=5 1000 NORMAL_CLOSURE 'bye'"):
        assert line in out
    assert out.count("websocket  ") == 16          # 15 frames + 1 reassembled message


# --- tshark, the second opinion -----------------------------------------------------------------

TSHARK_FIELDS = ["frame.number", "tcp.stream", "tcp.srcport", "tcp.len", "websocket.fin",
                 "websocket.opcode", "websocket.mask", "websocket.payload_length",
                 "websocket.payload_length_ext_16", "websocket.payload_length_ext_64"]


def tshark_frames(path: Path, server_port: int) -> dict[tuple[int, str], list[tuple]]:
    """tshark's WebSocket frames: {(tcp.stream, direction): [(opcode, fin, mask, payload_len)]}.

    One TCP segment may carry several frames: tshark then lists each field's values joined by
    commas.  The extended lengths appear only for the frames that have one (7-bit field 126 or
    127), so they are consumed in order.  ``-d`` makes sure the server port is read as HTTP
    (recent tshark finds the upgrade on any port by itself).
    """
    command = [TSHARK, "-r", str(path), "-d", f"tcp.port=={server_port},http", "-T", "fields"]
    for name in TSHARK_FIELDS:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    seen: dict[tuple[int, str], list[tuple]] = defaultdict(list)
    for line in result.stdout.splitlines():
        number, stream, sport, tcp_len, fin, opcode, mask, length, ext16, ext64 = \
            (line.split("\t") + [""] * 10)[:10]
        if not opcode:
            continue
        direction = "s2c" if int(sport) == server_port else "c2s"
        ext16s, ext64s = iter(ext16.split(",")), iter(ext64.split(","))
        for f, o, m, n in zip(fin.split(","), opcode.split(","), mask.split(","),
                              length.split(",")):
            n = int(n)
            n = int(next(ext16s)) if n == 126 else int(next(ext64s)) if n == 127 else n
            seen[int(stream), direction].append((int(o), _flag(f), _flag(m), n))
    return dict(seen)


def _flag(value: str) -> int:
    return 1 if value in ("1", "True", "true") else 0   # tshark 4.0 prints 1, 4.2+ True


def lablib_frames(records: list[Record]) -> dict[tuple[int, str], list[tuple]]:
    """lablib's frames in the same form.  A frame lablib refuses (``error``/``malformed``) still
    has a readable header, which tshark shows: take its first two bytes (§5.2)."""
    seen: dict[tuple[int, str], list[tuple]] = defaultdict(list)
    for r in records:
        key = (r.conversation, r.direction)
        if r.layer == "websocket" and r.kind == "frame":
            f = r.fields
            seen[key].append((f["opcode"], f["fin"], f["mask"], f["payload_len"]))
        elif r.layer == "error" and r.kind == "malformed" and len(r.raw) >= 2:
            b0, b1 = r.raw[0], r.raw[1]
            if b1 & 0x7F < 126:
                seen[key].append((b0 & 0x0F, b0 >> 7, b1 >> 7, b1 & 0x7F))
    return dict(seen)


def cross_check(path: Path) -> dict:
    capture = read_pcap(path)
    [server_port] = {c.server[1] for c in capture}
    ours = lablib_frames(dissect_capture(capture))
    theirs = tshark_frames(path, server_port)
    assert ours, "no WebSocket frames in the capture"
    assert theirs == ours
    return ours


@needs_tshark
@pytest.mark.parametrize("name", NAMES)
def test_tshark_agrees_on_the_shipped_capture(name):
    ours = cross_check(CAPTURES / f"{name}.pcap")
    if name == "ws-echo-websockets":    # spelled out once: (opcode, fin, mask, payload_len)
        assert ours[0, "c2s"] == [(1, 1, 1, 5), (2, 1, 1, 6), (1, 1, 1, 300), (1, 0, 1, 4),
                                  (0, 0, 1, 4), (0, 0, 1, 2), (0, 1, 1, 0), (9, 1, 1, 14),
                                  (8, 1, 1, 5)]
        assert ours[0, "s2c"] == [(1, 1, 0, 5), (2, 1, 0, 6), (1, 1, 0, 300), (1, 1, 0, 10),
                                  (10, 1, 0, 14), (8, 1, 0, 5)]
    if name == "ws-bad-input":
        assert ours[0, "c2s"] == [(1, 1, 1, 5), (3, 1, 1, 0)]


@needs_tshark
@pytest.mark.parametrize("name", NAMES)
def test_tshark_agrees_on_a_fresh_relay_recording(name, tmp_path):
    """Record the scenario now (real ephemeral ports, not renumbered) and compare again."""
    capture, _ = asyncio.run(asyncio.wait_for(SCENARIOS[name](), 30))
    path = tmp_path / f"{name}.pcap"
    write_pcap(capture, path)
    cross_check(path)
