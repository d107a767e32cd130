"""lablib.capture.resp: the RESP decoder (exact vectors, byte by byte, hypothesis) and the
dissector's Redis layer, on a real relay between redis-py and a real server."""

from __future__ import annotations

import math

import pytest
import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection

from lablib.capture.dissect import dissect, dissect_streams
from lablib.capture.relay import Relay
from lablib.capture.resp import (
    NEED_DATA, Attribute, ErrorReply, InlineCommand, MalformedRESP, Map, Push, RespParser, Set,
    SimpleString, Verbatim, encode_command, looks_like_resp)
from lablib.services.redis import redis_server
from lablib.socketio.packets import Packet, PacketType
from lablib.socketio.redis_protocol import (
    BroadcastMessage, BroadcastOptions, Channels, encode_broadcast)
from tests.aio_support import asyncio_test


def parse(data: bytes, **kwargs) -> list:
    parser = RespParser(**kwargs)
    parser.feed(data)
    values = parser.values()
    assert parser.buffered == 0 and parser.consumed == len(data)
    return values


# --- exact vectors (the protocol specification's own examples) --------------------------------

@pytest.mark.parametrize("data, value", [
    (b"+OK\r\n", SimpleString("OK")),
    (b"-ERR unknown command 'x'\r\n", ErrorReply("ERR unknown command 'x'")),
    (b":1000\r\n", 1000),
    (b":-1\r\n", -1),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n", [b"hello", b"world"]),
    (b"*3\r\n:1\r\n:2\r\n:3\r\n", [1, 2, 3]),
    (b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
     [[1, 2, 3], [SimpleString("Hello"), ErrorReply("World")]]),
    (b"$6\r\nfoo\r\nx\r\n", b"foo\r\nx"),                 # binary-safe: CRLF inside
    (b"_\r\n", None),
    (b"#t\r\n", True),
    (b"#f\r\n", False),
    (b",1.23\r\n", 1.23),
    (b",-inf\r\n", -math.inf),
    (b"(3492890328409238509324850943850943825024385\r\n",
     3492890328409238509324850943850943825024385),
    (b"!21\r\nSYNTAX invalid syntax\r\n", ErrorReply("SYNTAX invalid syntax")),
    (b"=15\r\ntxt:Some string\r\n", Verbatim("txt", "Some string")),
    (b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
     Map(((SimpleString("first"), 1), (SimpleString("second"), 2)))),
    (b"~2\r\n+a\r\n:1\r\n", Set((SimpleString("a"), 1))),
    (b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", Push((b"message", b"ch", b"hi"))),
    (b"|1\r\n+ttl\r\n:3600\r\n:2\r\n", Attribute(Map(((SimpleString("ttl"), 3600),)), 2)),
])
def test_vectors(data, value):
    assert parse(data) == [value]


def test_simple_string_and_bulk_string_differ():
    assert parse(b"+OK\r\n$2\r\nOK\r\n") == ["OK", b"OK"]
    assert isinstance(parse(b"+OK\r\n")[0], SimpleString)


def test_inline_commands_only_where_allowed():
    assert parse(b"PING\r\n", inline=True) == [InlineCommand((b"PING",))]
    assert parse(b"SET k  v\r\n", inline=True) == [InlineCommand((b"SET", b"k", b"v"))]
    with pytest.raises(MalformedRESP, match="unknown RESP type byte b'P'"):
        parse(b"PING\r\n")


def test_redis_py_commands_decode():
    packed = b"".join(Connection().pack_command("PUBLISH", "socket.io#/#", b"\x93\x00\r\n"))
    assert parse(packed) == [[b"PUBLISH", b"socket.io#/#", b"\x93\x00\r\n"]]


def test_byte_by_byte():
    data = b"*2\r\n$5\r\nhello\r\n%1\r\n+k\r\n>2\r\n:1\r\n_\r\n:7\r\n"
    parser = RespParser()
    values, offsets = [], []
    for i in range(len(data)):
        parser.feed(data[i:i + 1])
        value = parser.next_value()
        if value is not NEED_DATA:
            values.append(value)
            offsets.append(parser.consumed)
    assert values == [[b"hello", Map(((SimpleString("k"), Push((1, None))),))], 7]
    assert offsets == [34, 38]
    assert parser.next_value() is NEED_DATA and parser.buffered == 0


@pytest.mark.parametrize("data, problem", [
    (b"?\r\n", "unknown RESP type byte"),
    (b":12a\r\n", "not an integer"),
    (b"$-2\r\n", "negative length"),
    (b"$3\r\nabcd\r\n", "not followed by CRLF"),
    (b"#x\r\n", "boolean"),
    (b",1.2.3\r\n", "not a double"),
    (b"_x\r\n", "null carries nothing"),
    (b"%-1\r\n", "only RESP2 arrays"),
    (b"=3\r\ntxt\r\n", "verbatim"),
    (b"$600000000\r\n", "exceeds the limit"),
    (b"*9999999999\r\n", "exceeds the limit"),
    (b"*1\r\n" * 100, "nested deeper"),
    (b"+" + b"x" * 70000, "longer than"),
])
def test_malformed(data, problem):
    parser = RespParser()
    parser.feed(data)
    with pytest.raises(MalformedRESP, match=problem):
        parser.next_value()


def test_a_claimed_size_holds_no_memory_until_the_bytes_come():
    parser = RespParser()
    parser.feed(b"$500000000\r\nabc")
    assert parser.next_value() is NEED_DATA and parser.buffered == 15


# --- hypothesis: encode (a test-side writer) then decode, in any chunking ------------------------

def _write(value) -> bytes:
    if value is None:
        return b"_\r\n"
    if isinstance(value, SimpleString):
        return b"+" + value.encode() + b"\r\n"
    if isinstance(value, ErrorReply):
        return b"-" + value.message.encode() + b"\r\n"
    if isinstance(value, bool):
        return b"#t\r\n" if value else b"#f\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, float):
        return b"," + repr(value).encode() + b"\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(map(_write, value))
    if isinstance(value, Push):
        return b">%d\r\n" % len(value.items) + b"".join(map(_write, value.items))
    if isinstance(value, Set):
        return b"~%d\r\n" % len(value.items) + b"".join(map(_write, value.items))
    if isinstance(value, Map):
        return b"%%%d\r\n" % len(value.items) + b"".join(_write(k) + _write(v)
                                                           for k, v in value.items)
    raise AssertionError(value)


line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                    max_size=20)
scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.binary(max_size=30)
           | st.floats(allow_nan=False) | line_text.map(SimpleString)
           | line_text.map(ErrorReply))
values = st.recursive(scalars, lambda inner: (
    st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(lambda v: Push(tuple(v)))
    | st.lists(inner, max_size=4).map(lambda v: Set(tuple(v)))
    | st.lists(st.tuples(inner, inner), max_size=3).map(lambda v: Map(tuple(v)))),
    max_leaves=15)


@given(st.lists(values, min_size=1, max_size=4), st.data())
def test_round_trip_in_any_chunks(items, data):
    stream = b"".join(map(_write, items))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = RespParser()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        parser.feed(stream[start:end])
        got += parser.values()
    assert got == items and parser.consumed == len(stream)


@given(st.binary(max_size=60))
def test_garbage_never_escapes_as_another_exception(data):
    parser = RespParser(inline=True)
    parser.feed(data)
    try:
        parser.values()
    except MalformedRESP:
        pass


# --- the dissector's Redis layer --------------------------------------------------------------

BROADCAST = BroadcastMessage("4iE9Kn", Packet(PacketType.EVENT, "/", ["hello", 1]),
                             BroadcastOptions(("room1",), ("sidX",)))


def test_looks_like_resp():
    assert looks_like_resp(b"*1\r\n$4\r\nPING\r\n", b"")
    assert not looks_like_resp(b"GET / HTTP/1.1\r\n", b"")
    assert looks_like_resp(b"", b"+OK\r\n") and not looks_like_resp(b"", b"HTTP/1.1 200")


def test_dissect_publish_and_its_reply():
    channel, payload = encode_broadcast(BROADCAST)
    records = dissect_streams(encode_command("PUBLISH", channel, payload), b":2\r\n")
    assert [(r.layer, r.kind, r.depth) for r in records] == [
        ("resp", "command", 0), ("socketio-redis", "broadcast", 1), ("resp", "reply", 0)]
    command, broadcast, reply = records
    assert command.fields["command"] == "PUBLISH"
    assert command.fields["channel"] == "socket.io#/#room1#"
    assert command.fields["data"] == payload and command.raw == encode_command(
        "PUBLISH", channel, payload)
    assert broadcast.fields["uid"] == "4iE9Kn"
    assert broadcast.fields["packet"] == BROADCAST.packet
    assert broadcast.fields["rooms"] == ["room1"] and broadcast.fields["except"] == ["sidX"]
    assert broadcast.fields["room"] == "room1" and broadcast.fields["namespace"] == "/"
    assert broadcast.summary == ("from 4iE9Kn to /: EVENT ['hello', 1] rooms=['room1'] "
                                 "except=['sidX']")
    assert reply.summary == "2" and reply.offset == 0 and reply.length == 4


def test_dissect_a_truncated_and_a_malformed_stream():
    records = dissect_streams(encode_command("PING") + b"*2\r\n$3\r\nGET", b"+PONG\r\n?x")
    assert [(r.layer, r.kind) for r in records] == [
        ("resp", "command"), ("error", "truncated"), ("resp", "reply"), ("error", "malformed")]
    assert records[1].offset == 14 and records[3].offset == 7


def test_dissect_a_malformed_adapter_message():
    records = dissect_streams(encode_command("PUBLISH", "socket.io#/#", b"\xc1"), b":0\r\n")
    assert (records[1].layer, records[1].kind) == ("error", "malformed")
    assert records[1].summary.startswith("Socket.IO Redis adapter: not a MessagePack message")


def test_other_channels_are_not_the_adapters():
    records = dissect_streams(encode_command("PUBLISH", "news", b"\x93"), b":0\r\n")
    assert [r.layer for r in records] == ["resp", "resp"]


@pytest.mark.parametrize("protocol", [2, 3])
@asyncio_test(timeout=30)
async def test_a_real_relay_between_redis_py_and_the_server(protocol):
    """Publish an adapter broadcast through a recording relay, receive it through the relay
    (RESP2: a message array; RESP3: a push), and read both conversations back."""
    channel, payload = encode_broadcast(BROADCAST)
    async with redis_server() as url:
        port = int(url.rsplit(":", 1)[1])
        async with Relay("127.0.0.1", port) as relay:
            relayed = f"redis://127.0.0.1:{relay.port}"
            subscriber = redis.asyncio.Redis.from_url(relayed, protocol=protocol)
            pubsub = subscriber.pubsub()
            await pubsub.psubscribe(Channels("/").pattern)
            assert (await pubsub.get_message(timeout=10))["type"] == "psubscribe"
            publisher = redis.asyncio.Redis.from_url(relayed)
            assert await publisher.publish(channel, payload) == 1
            message = None
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            assert message["data"] == payload
            await pubsub.aclose()
            await subscriber.aclose()
            await publisher.aclose()
            await relay.wait_for(lambda capture: len(capture) == 2
                                 and all(c.end is not None for c in capture))
    conversations = relay.capture.conversations
    received = [r for r in dissect(conversations[0])
                if r.kind in ("push", "broadcast")]
    published = [r for r in dissect(conversations[1]) if r.layer != "tcp"]

    push, decoded = received[-2:]
    assert push.fields["message"] == "pmessage" and push.fields["resp3"] == (protocol == 3)
    assert push.fields["channel"] == "socket.io#/#room1#" and push.fields["data"] == payload
    assert decoded.layer == "socketio-redis" and decoded.fields["message"] == BROADCAST
    publish = [r for r in published if r.layer == "resp" and r.fields.get("command") == "PUBLISH"]
    assert len(publish) == 1 and publish[0].fields["data"] == payload
    after = published[published.index(publish[0]) + 1]
    assert (after.layer, after.fields["message"]) == ("socketio-redis", BROADCAST)
    assert any(r.kind == "reply" and r.fields["value"] == 1 for r in published)  # 1 receiver
