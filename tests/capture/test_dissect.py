"""lablib.capture.dissect: real `websockets` sessions, any chunking, broken streams."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from lablib import cli
from lablib.capture.dissect import (DECODERS, Decoded, Decoder, Message, Record, dissect,
                                    dissect_capture, dissect_streams)
from lablib.capture.records import Capture, Chunk, Conversation
from lablib.websocket.frames import Frame, Opcode, encode_close_payload, encode_frame
from lablib.websocket.handshake import accept_key


# --- a tiny recording forwarder (kept here, not in conftest, to stay out of the relay's way) ----

class Recorder:
    """Forward 127.0.0.1:port -> 127.0.0.1:target and record both byte streams."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.conversations: list[Conversation] = []
        self.finished = asyncio.Event()
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def __aenter__(self) -> Recorder:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        conv = Conversation(len(self.conversations), writer.get_extra_info("peername")[:2],
                            ("127.0.0.1", self.target), start=self.now())
        self.conversations.append(conv)
        await asyncio.gather(self._pump(reader, up_writer, conv, "c2s"),
                             self._pump(up_reader, writer, conv, "s2c"))
        conv.end = self.now()
        for w in (writer, up_writer):
            w.close()
        self.finished.set()

    async def _pump(self, reader, writer, conv, direction) -> None:
        try:
            while data := await reader.read(65536):
                conv.chunks.append(Chunk(self.now(), direction, data))
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except (ConnectionError, OSError):
            pass


async def _echo(ws) -> None:
    async for message in ws:
        await ws.send(message)


async def _hello(ws) -> None:
    for text in ("Hello", "World", "!"):
        await ws.send(text)
        assert await ws.recv() == text


def record_session(client=_hello, *, compression: str | None = None) -> Conversation:
    """Run an echo server and a client through the recorder; return the conversation."""
    async def main() -> Conversation:
        async with serve(_echo, "127.0.0.1", 0, compression=compression,
                         ping_interval=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with Recorder(port) as recorder:
                async with connect(f"ws://127.0.0.1:{recorder.port}/chat",
                                   compression=compression, ping_interval=None) as ws:
                    await client(ws)
                await asyncio.wait_for(recorder.finished.wait(), 5)
        return recorder.conversations[0]
    return asyncio.run(main())


def frames(records, direction=None):
    return [r for r in records if r.layer == "websocket" and r.kind == "frame"
            and (direction is None or r.direction == direction)]


@pytest.fixture(scope="module")
def echo_session() -> Conversation:
    return record_session()


# --- a real session -------------------------------------------------------------------------

def test_handshake_records(echo_session):
    records = dissect(echo_session)
    http = [r for r in records if r.layer == "http"]
    assert [r.kind for r in http] == ["request", "response"]
    request, response = http
    assert request.direction == "c2s" and request.fields["method"] == "GET"
    assert request.fields["target"] == "/chat"
    headers = dict((k.lower(), v) for k, v in request.fields["headers"])
    assert headers["upgrade"].lower() == "websocket"
    assert headers["sec-websocket-version"] == "13"
    assert response.direction == "s2c" and response.fields["status"] == 101
    assert response.fields["accept_ok"] is True
    assert response.fields["accept_expected"] == accept_key(headers["sec-websocket-key"])
    assert request.offset == 0 and request.raw == echo_session.data("c2s")[:request.length]
    assert response.time >= request.time


def test_frames_both_ways(echo_session):
    records = dissect(echo_session)
    assert not [r for r in records if r.layer == "error"]
    c2s, s2c = frames(records, "c2s"), frames(records, "s2c")
    assert [r.fields["opcode_name"] for r in c2s] == ["TEXT", "TEXT", "TEXT", "CLOSE"]
    assert [r.fields["opcode_name"] for r in s2c] == ["TEXT", "TEXT", "TEXT", "CLOSE"]
    assert [r.fields["payload"] for r in c2s[:3]] == [b"Hello", b"World", b"!"]
    assert all(r.fields["mask"] == 1 and len(r.fields["masking_key"]) == 4 for r in c2s)
    assert all(r.fields["mask"] == 0 and r.fields["masking_key"] is None for r in s2c)
    for r in c2s + s2c:
        assert [r.fields[name] for name in ("fin", "rsv1", "rsv2", "rsv3")] == [1, 0, 0, 0]
    assert c2s[-1].fields["close_code"] == 1000 and s2c[-1].fields["close_code"] == 1000
    assert c2s[-1].fields["close_code_name"] == "NORMAL_CLOSURE"
    # The masked bytes on the wire, unmasked by the key, give the payload (§5.3).
    hello = c2s[0]
    key, wire = hello.fields["masking_key"], hello.fields["masked_payload"]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(wire)) == b"Hello"
    assert hello.raw[hello.fields["header_len"]:] == wire
    assert hello.summary == "TEXT fin=1 mask=1 len=5 'Hello'"


def test_offsets_raw_and_times(echo_session):
    records = dissect(echo_session)
    for direction in ("c2s", "s2c"):
        stream = echo_session.data(direction)
        on_stream = [r for r in records if r.direction == direction and r.depth == 0
                     and r.layer in ("http", "websocket")]
        position = 0
        for r in on_stream:  # the records tile the stream, in order, without gaps
            assert r.offset == position and r.raw == stream[r.offset:r.end]
            position = r.end
        assert position == len(stream)
        # A record's time is the time of the chunk that carried its last byte.
        chunks = [c for c in echo_session.chunks if c.direction == direction]
        for r in on_stream:
            end, seen = r.end, 0
            for chunk in chunks:
                seen += len(chunk.data)
                if seen >= end:
                    assert r.time == chunk.time
                    break
    times = [r.time for r in records]
    assert times == sorted(times)
    assert records[0].layer == "tcp" and records[0].kind == "open"
    assert records[-1].layer == "tcp" and records[-1].kind == "close"
    assert all(r.conversation == echo_session.id for r in records)


def test_compressed_session():
    text = "Hello, compression! " * 20

    async def client(ws):
        for _ in range(2):
            await ws.send(text)
            assert await ws.recv() == text
        await ws.send([text[:100], text[100:]])   # fragmented: RSV1 on the first frame only
        assert await ws.recv() == text

    conv = record_session(client, compression="deflate")
    records = dissect(conv)
    assert not [r for r in records if r.layer == "error"]
    response = next(r for r in records if r.kind == "response")
    assert "permessage-deflate" in {k.lower(): v for k, v in response.fields["headers"]}["sec-websocket-extensions"]
    data = [r for r in frames(records) if r.fields["opcode_name"] == "TEXT"]
    assert len(data) == 6 and all(r.fields["rsv1"] == 1 for r in data)
    assert all(r.fields["payload_len"] < len(text) for r in data)
    cont = [r for r in frames(records) if r.fields["opcode_name"] == "CONT"]
    # websockets ends an iterable with an empty CONT frame (fin=1)
    assert len(cont) == 2 and all(r.fields["rsv1"] == 0 for r in cont)
    assert all(r.summary.endswith("(compressed)") for r in cont)
    messages = [r for r in records if r.kind == "message"]
    assert [m.fields["text"] for m in messages] == [text] * 6
    assert all(m.depth == 1 and m.fields["compressed"] for m in messages)
    assert [m.fields["frames"] for m in messages if m.direction == "c2s"] == [1, 1, 3]


@pytest.mark.parametrize("takeover", [True, False])
def test_deflate_context_takeover(takeover):
    """RFC 7692 §7.1.1: without context takeover every message starts a fresh window."""
    def deflate(messages, compressor=None):
        out = []
        for m in messages:
            z = compressor or zlib.compressobj(wbits=-15)
            data = z.compress(m) + z.flush(zlib.Z_SYNC_FLUSH)
            out.append(encode_frame(Opcode.TEXT, data[:-4], rsv1=True))  # minus 00 00 ff ff
        return b"".join(out)

    texts = [b"repeat after me " * 4] * 3
    params = "" if takeover else "; server_no_context_takeover"
    switch = _SWITCH.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate"
                             + params.encode() + b"\r\n\r\n")
    s2c = switch + deflate(texts, zlib.compressobj(wbits=-15) if takeover else None)
    messages = [r for r in dissect_streams(_UPGRADE, s2c) if r.kind == "message"]
    assert [m.fields["data"] for m in messages] == texts
    assert all("violation" != r.kind for r in dissect_streams(_UPGRADE, s2c))


def test_rsv1_without_deflate_is_flagged():
    s2c = _SWITCH + encode_frame(Opcode.TEXT, b"x", rsv1=True)
    records = dissect_streams(_UPGRADE, s2c)
    assert records[-1].layer == "error" and "RSV" in records[-1].summary


def test_chunks_option_lists_segments():
    conv = _two_conversations().conversations[0]
    records = dissect(conv, chunks=True)
    segments = [r for r in records if r.kind == "segment"]
    assert [(r.direction, r.offset, r.length, r.time) for r in segments] == [
        ("c2s", 0, 50, 0.1), ("c2s", 50, len(_C2S) - 50, 0.2), ("s2c", 0, len(_S2C), 0.3)]
    # A segment comes before the records it completed.
    kinds = [r.kind for r in records if r.direction == "c2s"]
    assert kinds.index("segment") < kinds.index("request")


def test_fragmented_message_ping_and_binary():
    async def client(ws):
        await ws.send(["Hel", "lo"])
        assert await ws.recv() == "Hello"
        await ws.send(b"\x00\x01\x02")
        assert await ws.recv() == b"\x00\x01\x02"
        await (await ws.ping(b"abc"))

    records = dissect(record_session(client))
    c2s = frames(records, "c2s")
    assert [(r.fields["opcode_name"], r.fields["fin"]) for r in c2s] == [
        ("TEXT", 0), ("CONT", 0), ("CONT", 1), ("BINARY", 1), ("PING", 1), ("CLOSE", 1)]
    messages = [r for r in records if r.kind == "message" and r.direction == "c2s"]
    assert len(messages) == 1
    assert messages[0].fields["text"] == "Hello" and messages[0].fields["frames"] == 3
    assert messages[0].offset == c2s[0].offset and messages[0].end == c2s[2].end
    pongs = [r for r in frames(records, "s2c") if r.fields["opcode_name"] == "PONG"]
    assert len(pongs) == 1 and pongs[0].fields["payload"] == b"abc"


# --- chunking does not matter -----------------------------------------------------------------

def _rechunk(conv: Conversation, cuts_c2s: list[int], cuts_s2c: list[int]) -> Conversation:
    """The same streams cut at other points; every chunk at time 0 so order is comparable."""
    chunks = []
    for direction, cuts in (("c2s", cuts_c2s), ("s2c", cuts_s2c)):
        data = conv.data(direction)
        points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        chunks += [Chunk(0.0, direction, data[a:b]) for a, b in zip(points, points[1:])]
    return Conversation(conv.id, conv.client, conv.server, chunks, 0.0, 0.0)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 10_000), max_size=30), st.lists(st.integers(0, 10_000), max_size=30))
def test_same_records_whatever_the_chunking(echo_session, cuts_c2s, cuts_s2c):
    whole = dissect(_rechunk(echo_session, [], []))
    assert dissect(_rechunk(echo_session, cuts_c2s, cuts_s2c)) == whole


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_frame_time_is_the_chunk_where_it_completes(data):
    payloads = data.draw(st.lists(st.binary(max_size=300), min_size=1, max_size=5))
    stream = b"".join(encode_frame(Opcode.BINARY, p) for p in payloads)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=10))))
    points = [0, *cuts, len(stream)]
    chunks = [Chunk(0.0, "c2s", _UPGRADE), Chunk(0.5, "s2c", _SWITCH)]
    chunks += [Chunk(float(i + 1), "s2c", stream[a:b])
               for i, (a, b) in enumerate(zip(points, points[1:]))]
    conv = Conversation(1, ("c", 1), ("s", 2), chunks)
    got = frames(dissect(conv), "s2c")
    assert [r.fields["payload"] for r in got] == payloads
    for r in got:
        end = r.end - len(_SWITCH)
        index = next(i for i, p in enumerate(points[1:]) if p >= end)
        assert r.time == float(index + 1)


# --- synthetic streams: HTTP, errors, violations ------------------------------------------------

_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
_UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + _KEY.encode() +
            b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
_SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Accept: " + accept_key(_KEY).encode() + b"\r\n\r\n")
_HELLO = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # RFC 6455 §5.7
_C2S = _UPGRADE + _HELLO + encode_frame(Opcode.CLOSE, encode_close_payload(1000),
                                        masking_key=b"abcd")
_S2C = _SWITCH + b"\x81\x05Hello" + encode_frame(Opcode.CLOSE, encode_close_payload(1000, "bye"))


def test_rfc_example_streams():
    records = dissect_streams(_C2S, _S2C)
    assert [(r.direction, r.layer, r.kind) for r in records] == [
        ("c2s", "http", "request"), ("s2c", "http", "response"),
        ("c2s", "websocket", "frame"), ("c2s", "websocket", "frame"),
        ("s2c", "websocket", "frame"), ("s2c", "websocket", "frame")]
    hello = records[2]
    assert hello.fields == {
        "fin": 1, "rsv1": 0, "rsv2": 0, "rsv3": 0, "opcode": 1, "opcode_name": "TEXT", "mask": 1,
        "payload_len_field": 5, "extended_payload_len": None, "payload_len": 5,
        "masking_key": b"\x37\xfa\x21\x3d", "header_len": 6,
        "masked_payload": b"\x7f\x9f\x4d\x51\x58", "payload": b"Hello"}
    assert hello.offset == len(_UPGRADE) and hello.raw == _HELLO and hello.conversation is None
    assert isinstance(hello.obj, Frame)
    assert records[-1].fields["close_reason"] == "bye"
    assert records[-1].summary == "CLOSE fin=1 mask=0 len=5 1000 NORMAL_CLOSURE 'bye'"


def test_extended_lengths():
    big = encode_frame(Opcode.BINARY, bytes(300)) + encode_frame(Opcode.BINARY, bytes(70000))
    got = frames(dissect_streams(_UPGRADE, _SWITCH + big), "s2c")
    names = ("payload_len_field", "extended_payload_len", "header_len")
    assert [tuple(r.fields[n] for n in names) for r in got] == [(126, 300, 4), (127, 70000, 10)]


def test_plain_http_keep_alive():
    c2s = (b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\n\r\n"
           b"POST /engine.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: a\r\n"
           b"Content-Length: 5\r\n\r\n4hey!"
           b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /last HTTP/1.1\r\nHost: a\r\n\r\n")
    s2c = (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n0{}"
           b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"          # HEAD: no body
           b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")  # read until close
    records = dissect_streams(c2s, s2c, decoders=[])
    assert [(r.kind, r.fields.get("method") or r.fields.get("status")) for r in records] == [
        ("request", "GET"), ("response", 200), ("request", "POST"), ("response", 200),
        ("request", "HEAD"), ("response", 200), ("request", "GET"), ("response", 200)]
    bodies = [r.fields["body"] for r in records]
    assert bodies == [b"", b"0{}", b"4hey!", b"ok", b"", b"", b"", b"until the end"]
    assert records[2].summary == "POST /engine.io/?EIO=4&transport=polling&sid=x HTTP/1.1 body=5B"
    assert sum(r.length for r in records if r.direction == "c2s") == len(c2s)
    assert sum(r.length for r in records if r.direction == "s2c") == len(s2c)
    # Still open (no EOF): the read-until-close body is not finished yet.
    assert dissect_streams(c2s, s2c, eof=False)[-1].kind == "truncated"


def test_refused_upgrade_stays_http():
    s2c = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno\n"
    records = dissect_streams(_UPGRADE, s2c)
    assert [(r.layer, r.kind) for r in records] == [("http", "request"), ("http", "response")]
    assert records[1].fields["status"] == 400


def test_wrong_accept_is_flagged():
    s2c = _SWITCH.replace(accept_key(_KEY).encode(), b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    response = dissect_streams(_UPGRADE, s2c)[1]
    assert response.fields["accept_ok"] is False
    assert "wrong Sec-WebSocket-Accept" in response.summary


def test_masking_violations_are_flagged():
    c2s = _UPGRADE + b"\x81\x02hi"                                   # client frame not masked
    s2c = _SWITCH + encode_frame(Opcode.TEXT, b"hi", masking_key=b"abcd")  # server frame masked
    records = dissect_streams(c2s, s2c)
    violations = [r for r in records if r.kind == "violation"]
    assert [(r.direction, r.summary) for r in violations] == [
        ("c2s", "a client frame must be masked (§5.1)"),
        ("s2c", "a server frame must not be masked (§5.1)")]
    assert len(frames(records)) == 2   # still dissected


def test_fragmentation_violations():
    s2c = _SWITCH + encode_frame(Opcode.CONT, b"x") + encode_frame(Opcode.TEXT, b"a", fin=False) \
        + encode_frame(Opcode.TEXT, b"b") + encode_frame(Opcode.TEXT, b"\xff")
    records = dissect_streams(_UPGRADE, s2c)
    problems = [r.summary for r in records if r.kind == "violation"]
    assert problems == ["continuation frame without a message to continue (§5.4)",
                        "new TEXT frame before the previous message ended (§5.4)",
                        "text message is not valid UTF-8 (§8.1)"]


def test_truncated_and_malformed_frames():
    records = dissect_streams(_UPGRADE + _HELLO[:7], _SWITCH + b"\x83\x00")
    errors = {r.direction: r for r in records if r.layer == "error"}
    assert errors["c2s"].kind == "truncated" and errors["c2s"].offset == len(_UPGRADE)
    assert errors["c2s"].raw == _HELLO[:7]
    assert errors["s2c"].kind == "malformed" and "reserved opcode 0x3" in errors["s2c"].summary


def test_bad_close_payload():
    s2c = _SWITCH + encode_frame(Opcode.CLOSE, b"\x03\xed")  # 1005 may not be sent (§7.4.1)
    close = frames(dissect_streams(_UPGRADE, s2c))[0]
    assert "invalid close code 1005" in close.fields["close_error"]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(_C2S)), st.integers(0, len(_S2C)))
def test_truncated_streams_never_raise(cut_c2s, cut_s2c):
    full = dissect_streams(_C2S, _S2C)
    records = dissect_streams(_C2S[:cut_c2s], _S2C[:cut_s2c])
    assert not [r for r in records if r.kind == "internal"]
    for direction in ("c2s", "s2c"):
        got = [r for r in records if r.direction == direction]
        good = [r for r in got if r.layer != "error"]
        # What was dissected is a prefix of the full dissection ...
        assert good == [r for r in full if r.direction == direction][:len(good)]
        # ... and anything left over is reported, never silently dropped.
        cut = (cut_c2s, cut_s2c)[direction == "s2c"]
        covered = max((r.end for r in got), default=0)
        assert covered == cut


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300), st.booleans())
def test_garbage_never_raises(c2s, s2c, after_handshake):
    if after_handshake:
        c2s, s2c = _UPGRADE + c2s, _SWITCH + s2c
    records = dissect_streams(c2s, s2c)
    assert all(isinstance(r, Record) for r in records)
    assert not [r for r in records if r.kind == "internal"]


def test_garbage_gives_an_error_record():
    records = dissect_streams(b"\x16\x03\x01\x02\x00 not http", b"")
    assert [(r.layer, r.kind) for r in records] == [("error", "malformed")]


# --- decoders ---------------------------------------------------------------------------------

def _json_decoder(message: Message):
    """A toy layer: JSON arrays become a 'json' record whose items go to the next layer."""
    if message.text is None or not message.text.startswith("["):
        return None
    items = json.loads(message.text)
    return [Decoded("json", "array", f"{len(items)} items", {"items": items}, obj=items,
                    inner=Message("json", json.dumps(x).encode(), json.dumps(x), message.direction,
                                  message.target)) for x in [items]]


def _item_decoder(message: Message):
    return [Decoded("json-item", "value", f"value {v!r}", {"value": v})
            for v in json.loads(message.text)]


def test_decoders_stack_and_nest():
    decoders = [Decoder("json", frozenset({"websocket", "http"}), _json_decoder),
                Decoder("items", frozenset({"json"}), _item_decoder)]
    c2s = _UPGRADE + encode_frame(Opcode.TEXT, b'[1, "a"]', masking_key=b"k3y!")
    s2c = _SWITCH + encode_frame(Opcode.TEXT, b'[2', fin=False) + encode_frame(Opcode.CONT, b"]")
    records = dissect_streams(c2s, s2c, decoders=decoders)
    shape = [(r.direction, r.layer, r.kind, r.depth) for r in records if r.depth > 0]
    assert shape == [("c2s", "json", "array", 1), ("c2s", "json-item", "value", 2),
                     ("c2s", "json-item", "value", 2), ("s2c", "websocket", "message", 1),
                     ("s2c", "json", "array", 2), ("s2c", "json-item", "value", 3)]
    items = [r.fields["value"] for r in records if r.layer == "json-item"]
    assert items == [1, "a", 2]
    array = next(r for r in records if r.layer == "json")
    assert array.offset == len(_UPGRADE) and array.time == 0.0 and array.obj == [1, "a"]


def test_decoders_see_http_bodies_and_the_target():
    seen = []
    decoder = Decoder("spy", frozenset({"http"}),
                      lambda m: seen.append((m.carrier, m.data, m.target, m.direction)))
    c2s = b"POST /engine.io/?EIO=4 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n40"
    s2c = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    dissect_streams(c2s, s2c, decoders=[decoder])
    assert seen == [("http", b"40", "/engine.io/?EIO=4", "c2s"),
                    ("http", b"ok", "/engine.io/?EIO=4", "s2c")]


def test_a_failing_decoder_becomes_an_error_record():
    def broken(message):
        raise ValueError("boom")
    decoders = [Decoder("broken", frozenset({"websocket"}), broken)]
    records = dissect_streams(_C2S, _S2C, decoders=decoders)
    failures = [r for r in records if r.kind == "decoder"]
    assert len(failures) == 2 and all(r.layer == "error" and r.depth == 1 for r in failures)
    assert "broken decoder failed" in failures[0].summary


def test_extra_decoders_are_passed_explicitly():
    upper = Decoder("test-upper", {"websocket"},
                    lambda m: [Decoded("upper", "text", m.text.upper())] if m.text else None)
    records = dissect_streams(_C2S, _S2C, decoders=[*DECODERS, upper])
    assert [r.summary for r in records if r.layer == "upper"] == ["HELLO", "HELLO"]
    assert "test-upper" not in [d.name for d in DECODERS]   # nothing registered behind our back


# --- captures and the CLI ---------------------------------------------------------------------

def _two_conversations() -> Capture:
    first = Conversation(1, ("127.0.0.1", 5001), ("127.0.0.1", 80),
                         [Chunk(0.1, "c2s", _C2S[:50]), Chunk(0.2, "c2s", _C2S[50:]),
                          Chunk(0.3, "s2c", _S2C)], start=0.0, end=0.5)
    second = Conversation(2, ("127.0.0.1", 5002), ("127.0.0.1", 80),
                          [Chunk(0.15, "c2s", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
                           Chunk(0.25, "s2c", b"HTTP/1.1 204 No Content\r\n\r\n")],
                          start=0.05, end=0.4)
    return Capture([first, second], source="test")


def test_dissect_capture_merges_by_time():
    records = dissect_capture(_two_conversations())
    assert {r.conversation for r in records} == {1, 2}
    assert [r.time for r in records] == sorted(r.time for r in records)
    assert [(r.conversation, r.layer, r.kind) for r in records[:4]] == [
        (1, "tcp", "open"), (2, "tcp", "open"), (2, "http", "request"), (1, "http", "request")]


def test_cli_render_and_parser(monkeypatch):
    text = cli.render(_two_conversations(), times="none")
    assert "=== conversation 1: 127.0.0.1:5001 -> 127.0.0.1:80" in text
    assert "TEXT fin=1 mask=1 len=5 'Hello'" in text and "HTTP/1.1 204 No Content" in text
    verbose = cli.render(_two_conversations(), verbose=True, hexdump=True,
                                 conversations=[1], layers=["websocket"])
    assert "masking_key = 37 fa 21 3d" in verbose and "conversation 2" not in verbose
    assert "KK  masking key" in verbose

    args = cli.build_parser().parse_args(["dissect", "x.pcap", "-v", "-l", "websocket",
                                          "--times", "none"])
    assert args.run is cli.run_dissect and args.layer == ["websocket"] and args.verbose
    pcap = pytest.importorskip("lablib.capture.pcap")
    monkeypatch.setattr(pcap, "read_pcap", lambda path: _two_conversations())
    out = io.StringIO()
    assert cli.run_dissect(args, out) == 0
    assert "payload = 48 65 6c 6c 6f" in out.getvalue()


def test_cli_reads_a_real_pcap(tmp_path):
    pcap = pytest.importorskip("lablib.capture.pcap")
    if not hasattr(pcap, "write_pcap"):
        pytest.skip("lablib.capture.pcap.write_pcap not available yet")
    path = tmp_path / "echo.pcap"
    pcap.write_pcap(_two_conversations(), str(path))
    out = io.StringIO()
    assert cli.run_dissect(cli.build_parser().parse_args(["dissect", str(path)]), out) == 0
    assert "CLOSE fin=1 mask=0 len=5 1000 NORMAL_CLOSURE 'bye'" in out.getvalue()


def test_cli_unreadable_file(tmp_path, capsys):
    args = cli.build_parser().parse_args(["dissect", str(tmp_path / "missing.pcap")])
    assert cli.run_dissect(args, io.StringIO()) == 1
    assert "cannot read" in capsys.readouterr().err


def test_default_decoders_are_listed_explicitly():
    from lablib.capture import decoders
    assert DECODERS is decoders.DECODERS
    assert [d.name for d in DECODERS] == ["engineio", "socketio", "mqtt", "sse", "socketio-redis"]


@pytest.mark.parametrize("module", ["lablib.capture.dissect", "lablib.capture.decoders",
                                    "lablib.capture.resp", "lablib.engineio.dissect",
                                    "lablib.socketio.dissect", "lablib.socketio.redis_dissect",
                                    "lablib.sse.dissect", "lablib.mqtt.dissect", "lablib.cli"])
def test_each_module_imports_first_without_a_cycle(module):
    """Imported first in a fresh interpreter, each module loads: no import cycle to hide."""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
