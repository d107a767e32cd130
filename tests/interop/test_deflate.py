"""permessage-deflate (RFC 7692) between lablib and ``websockets``, both directions.

* Over 127.0.0.1, for every parameter set ``websockets`` supports (defaults, each
  ``*_no_context_takeover``, ``*_max_window_bits``, all together): lablib client ->
  ``websockets`` server and ``websockets`` client -> lablib server agree the same parameters
  and exchange text and binary, fragmented and large messages.
* Byte for byte: with the same settings, the frames lablib sends carry exactly the compressed
  bytes ``websockets`` sends (each role, recorded by lablib's relay and read back by the
  dissector, which must inflate every one of them), and the 101 answers name the same
  parameters.  Without sockets, hypothesis compares lablib's compressor with
  ``websockets``' ``PerMessageDeflate`` under any settings.
* Limits and errors: a few-KiB frame that inflates past ``max_size`` is closed with 1009 by
  both libraries; data that does not inflate gets 1007 from lablib (1002 from ``websockets``).
* Defaults: ``websockets`` offers compression; lablib's server declines unless asked, so the
  chapters' websockets peers see the same uncompressed frames as before.
"""

from __future__ import annotations

import contextlib
import random

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.extensions.permessage_deflate import (ClientPerMessageDeflateFactory,
                                                      PerMessageDeflate,
                                                      ServerPerMessageDeflateFactory)
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode

from lablib.capture.dissect import dissect
from lablib.capture.relay import Relay
from lablib.errors import ConnectionClosed
from lablib.lab import ws_echo
from lablib.websocket.client import connect as lablib_connect
from lablib.websocket.deflate import DeflateOptions, DeflateParameters, Deflater, Inflater
from lablib.websocket.frames import Opcode, encode_frame
from lablib.websocket.server import serve as lablib_serve
from tests.aio_support import asyncio_test

pytestmark = pytest.mark.interop

# --- the parameter sets -------------------------------------------------------------------------
#
# name -> (the client's settings, the server's settings, what they agree).  The settings are the
# four RFC 7692 parameters as both libraries spell them (websockets' factories and lablib's
# DeflateOptions take the same keyword arguments); "default" is each library's "deflate".

P = DeflateParameters
CASES = {
    "default": ("deflate", "deflate", P(server_max_window_bits=12, client_max_window_bits=12)),
    "server_no_context_takeover": (
        dict(server_no_context_takeover=True), dict(),
        P(server_no_context_takeover=True)),
    "client_no_context_takeover": (
        dict(client_no_context_takeover=True), dict(),
        P(client_no_context_takeover=True)),
    "server_requires_no_context_takeover": (
        dict(), dict(server_no_context_takeover=True, client_no_context_takeover=True),
        P(server_no_context_takeover=True, client_no_context_takeover=True)),
    "server_max_window_bits=10": (
        dict(server_max_window_bits=10), dict(),
        P(server_max_window_bits=10)),
    "client_max_window_bits=10": (
        dict(client_max_window_bits=10), dict(),
        P(client_max_window_bits=10)),
    "server caps client_max_window_bits": (
        dict(client_max_window_bits=True), dict(client_max_window_bits=9),
        P(client_max_window_bits=9)),
    "server caps server_max_window_bits": (
        dict(), dict(server_max_window_bits=9),
        P(server_max_window_bits=9)),
    "everything": (
        dict(server_no_context_takeover=True, client_no_context_takeover=True,
             server_max_window_bits=11, client_max_window_bits=True),
        dict(client_max_window_bits=13),
        P(True, True, 11, 13)),
}
IDS = list(CASES)


def lablib_options(settings, *, client: bool):
    return settings if settings == "deflate" else DeflateOptions(**settings)


def websockets_options(settings, *, client: bool) -> dict:
    """``compression=``/``extensions=`` of a websockets client or server (memLevel 5, as its
    "deflate" and lablib's defaults)."""
    if settings == "deflate":
        return {"compression": "deflate"}
    factory = ClientPerMessageDeflateFactory if client else ServerPerMessageDeflateFactory
    kwargs = dict(settings)
    if client:
        kwargs.setdefault("client_max_window_bits", None)
    return {"compression": None,
            "extensions": [factory(compress_settings={"memLevel": 5}, **kwargs)]}


def websockets_agreed(extension: PerMessageDeflate, *, client: bool) -> DeflateParameters:
    """What a websockets connection agreed, in lablib's terms."""
    local = (extension.local_no_context_takeover, extension.local_max_window_bits)
    remote = (extension.remote_no_context_takeover, extension.remote_max_window_bits)
    (cnct, cbits), (snct, sbits) = (local, remote) if client else (remote, local)
    return DeflateParameters(cnct, snct, sbits, cbits)


# --- servers and clients of both libraries --------------------------------------------------------

@contextlib.asynccontextmanager
async def websockets_server(server_settings, **options):
    async with ws_serve(ws_echo, "127.0.0.1", 0, ping_interval=None,
                        **websockets_options(server_settings, client=False), **options) as server:
        yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def lablib_server(server_settings, **options):
    async with lablib_serve(ws_echo, "127.0.0.1", 0, ping_interval=None,
                            compression=lablib_options(server_settings, client=False),
                            **options) as server:
        yield server.port


@contextlib.asynccontextmanager
async def lablib_client(port, client_settings, **options):
    async with lablib_connect(f"ws://127.0.0.1:{port}/", ping_interval=None, rng=random.Random(1),
                              compression=lablib_options(client_settings, client=True),
                              **options) as ws:
        assert ws.connection.deflate is not None
        ws.agreed = ws.connection.deflate
        ws.extensions_answer = ws.response.headers.get("sec-websocket-extensions")
        yield ws


@contextlib.asynccontextmanager
async def websockets_client(port, client_settings, **options):
    async with ws_connect(f"ws://127.0.0.1:{port}/", ping_interval=None,
                          **websockets_options(client_settings, client=True), **options) as ws:
        [extension] = ws.protocol.extensions
        ws.agreed = websockets_agreed(extension, client=True)
        ws.extensions_answer = ws.response.headers.get("Sec-WebSocket-Extensions")
        yield ws


DIRECTIONS = {
    "lablib-client->websockets-server": (lablib_client, websockets_server),
    "websockets-client->lablib-server": (websockets_client, lablib_server),
}


def text(size: int, seed: int = 0) -> str:
    """Chat-like text: compressible, with some non-ASCII characters."""
    rng = random.Random(seed)
    words = ["hello", "world", "héllo", "wörld", "chat", "message", "日本", "🙂", "the", "a"]
    out, length = [], 0
    while length < size:
        out.append(rng.choice(words))
        length += len(out[-1]) + 1
    return " ".join(out)[:size]


def binary(size: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    half = rng.randbytes(size // 2)
    return (half + bytes(size - len(half)))  # half noise, half zeros


MESSAGES = [text(0), text(1), text(125), text(126, 1), text(5000, 2), text(5000, 2),
            binary(0), binary(1), binary(4000, 3), binary(70_000, 4), text(300_000, 5)]


# --- over sockets, both directions ---------------------------------------------------------------

@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("case", IDS)
@asyncio_test(timeout=30)
async def test_echo_under_each_parameter_set(direction, case):
    client_settings, server_settings, agreed = CASES[case]
    client, server = DIRECTIONS[direction]
    async with server(server_settings) as port:
        async with client(port, client_settings) as ws:
            assert ws.agreed == agreed
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message
            # fragmented: a text and a binary message in several frames
            await ws.send(["Hel", "lo, ", "wörld " * 100])
            assert await ws.recv() == "Hello, " + "wörld " * 100
            await ws.send([binary(3000, 6), binary(3000, 6), b"", b"end"])
            assert await ws.recv() == binary(3000, 6) * 2 + b"end"


@pytest.mark.parametrize("case", IDS)
@asyncio_test(timeout=30)
async def test_both_servers_answer_an_offer_alike(case):
    """The same client offer gets the same Sec-WebSocket-Extensions answer from both servers."""
    client_settings, server_settings, _ = CASES[case]
    answers = []
    for server in (websockets_server, lablib_server):
        async with server(server_settings) as port:
            async with websockets_client(port, client_settings) as ws:
                answers.append(ws.extensions_answer)
                await ws.send("x")
                assert await ws.recv() == "x"
    assert answers[0] == answers[1]


# --- byte for byte, over sockets -------------------------------------------------------------------

#: Whole messages only: websockets ends a fragmented send with an extra empty frame, so its
#: fragment boundaries (hence its flushes) differ from lablib's.
SEQUENCE = [text(200, 7), text(200, 7), text(3000, 8), binary(2000, 9), text(0), binary(50_000, 10),
            text(200, 7)]


async def recorded(client, server, case) -> list[tuple[str, bool, bytes]]:
    """Run SEQUENCE through the relay; the data frames as (direction, rsv1, payload) —
    the payloads unmasked, as the sender's compressor produced them."""
    client_settings, server_settings, _ = CASES[case]
    async with server(server_settings) as port:
        async with Relay("127.0.0.1", port) as relay:
            async with client(relay.port, client_settings) as ws:
                for message in SEQUENCE:
                    await ws.send(message)
                    assert await ws.recv() == message
            await relay.wait_idle()
    [conversation] = relay.capture.conversations
    records = dissect(conversation)
    assert not [r for r in records if r.layer == "error"], [r.summary for r in records]
    return [(r.direction, bool(r.fields["rsv1"]), r.fields["payload"]) for r in records
            if r.kind == "frame" and r.fields["opcode"] in (Opcode.TEXT, Opcode.BINARY)]


@pytest.mark.parametrize("case", IDS)
@asyncio_test(timeout=30)
async def test_same_settings_same_compressed_bytes(case):
    lablib_client_frames = await recorded(lablib_client, websockets_server, case)
    websockets_client_frames = await recorded(websockets_client, lablib_server, case)
    assert len(lablib_client_frames) == 2 * len(SEQUENCE)
    assert all(rsv1 for _, rsv1, _ in lablib_client_frames + websockets_client_frames)
    # c2s: lablib's client == websockets' client; s2c: websockets' server == lablib's server
    assert lablib_client_frames == websockets_client_frames
    # and compression happened: the repeated chat text costs less the second time unless reset
    c2s = [p for d, _, p in lablib_client_frames if d == "c2s"]
    _, _, agreed = CASES[case]
    assert (len(c2s[1]) < len(c2s[0])) == (not agreed.client_no_context_takeover)


@pytest.mark.parametrize("case", IDS)
@asyncio_test(timeout=30)
async def test_dissector_reads_every_message_of_each_parameter_set(case):
    """The dissector inflates both directions with what the 101 answer agreed."""
    client_settings, server_settings, _ = CASES[case]
    async with lablib_server(server_settings) as port:
        async with Relay("127.0.0.1", port) as relay:
            async with websockets_client(relay.port, client_settings) as ws:
                for message in SEQUENCE:
                    await ws.send(message)
                    assert await ws.recv() == message
                await ws.send(["Hel", "lo ", "wörld"])
                assert await ws.recv() == "Hello wörld"
            await relay.wait_idle()
    records = dissect(relay.capture.conversations[0])
    assert not [r for r in records if r.layer == "error"]
    expected = SEQUENCE + ["Hello wörld"]
    for direction in ("c2s", "s2c"):
        frames = [r for r in records if r.kind == "frame" and r.direction == direction
                  and r.fields["opcode"] in (Opcode.TEXT, Opcode.BINARY)]
        assert all(f.summary.endswith("(compressed)") for f in frames)
        messages = [r for r in records if r.kind == "message" and r.direction == direction]
        assert [m.fields["text"] if m.fields["opcode_name"] == "TEXT" else m.fields["data"]
                for m in messages] == expected
        assert all(m.fields["compressed"] for m in messages)


# --- defaults ----------------------------------------------------------------------------------

@asyncio_test
async def test_lablib_server_declines_websockets_default_offer_by_default():
    """What chapters 00-03 do: a websockets client (offering deflate) and a lablib server."""
    async with lablib_serve(ws_echo, "127.0.0.1", 0) as server:
        async with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
            assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert ws.protocol.extensions == []


@asyncio_test
async def test_lablib_client_offers_nothing_by_default():
    async with ws_serve(ws_echo, "127.0.0.1", 0) as server:  # compression on by default
        port = server.sockets[0].getsockname()[1]
        async with lablib_connect(f"ws://127.0.0.1:{port}/") as ws:
            assert "sec-websocket-extensions" not in dict(ws.request_headers)
            assert ws.connection.deflate is None
            await ws.send("Hello")
            assert await ws.recv() == "Hello"


@asyncio_test
async def test_an_offer_declined_by_a_server_without_compression():
    async with ws_serve(ws_echo, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with lablib_connect(f"ws://127.0.0.1:{port}/", compression="deflate") as ws:
            assert ws.connection.deflate is None
            await ws.send("Hello")
            assert await ws.recv() == "Hello"
    async with lablib_serve(ws_echo, "127.0.0.1", 0, compression=None) as server:
        async with ws_connect(f"ws://127.0.0.1:{server.port}/", compression="deflate") as ws:
            assert ws.protocol.extensions == []
            await ws.send("Hello")
            assert await ws.recv() == "Hello"


# --- limits and errors -----------------------------------------------------------------------

BOMB = Deflater(window_bits=12).deflate(b"\x00" * (4 << 20), fin=True)  # ~4 KiB -> 4 MiB


@asyncio_test
async def test_decompression_bomb_from_websockets_client_gets_1009_from_lablib_server():
    assert len(BOMB) < 8 * 1024
    async with lablib_server("deflate", max_size=1 << 20) as port:
        async with ws_connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
            # the bomb as a frame built by hand (websockets would compress 4 MiB the same
            # way, after building it in memory first)
            ws.transport.write(encode_frame(Opcode.BINARY, BOMB, rsv1=True,
                                            masking_key=b"\x01\x02\x03\x04"))
            with pytest.raises(websockets.ConnectionClosedError) as info:
                await ws.recv()
    assert info.value.rcvd.code == 1009


@asyncio_test
async def test_decompression_bomb_from_websockets_server_gets_1009_from_lablib_client():
    async def bomb(ws):
        ws.transport.write(encode_frame(Opcode.BINARY, BOMB, rsv1=True))
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.recv()
        bomb.code = ws.close_code

    async with ws_serve(bomb, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with lablib_connect(f"ws://127.0.0.1:{port}/", compression="deflate",
                                  max_size=1 << 20, ping_interval=None) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.code == 1009
    assert bomb.code == 1009  # the server read our close frame


@pytest.mark.parametrize("server, code", [(lablib_server, 1007), (websockets_server, 1002)])
@asyncio_test
async def test_data_that_does_not_inflate(server, code):
    """lablib: 1007 (RFC 6455 §7.4.1, like Node's ws); websockets: 1002."""
    async with server("deflate") as port:
        async with ws_connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
            ws.transport.write(encode_frame(Opcode.TEXT, b"\xff\xff\xff\xff", rsv1=True,
                                            masking_key=b"\x01\x02\x03\x04"))
            with pytest.raises(websockets.ConnectionClosedError) as info:
                await ws.recv()
    assert info.value.rcvd.code == code


# --- byte for byte, without sockets: lablib's compressor vs websockets' ------------------------

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(messages=st.lists(st.binary(max_size=4000) | st.text(max_size=1000).map(str.encode),
                         min_size=1, max_size=6),
       window_bits=st.integers(9, 15), takeover=st.booleans(),
       mem_level=st.integers(1, 9), level=st.sampled_from([-1, 1, 6, 9]))
def test_compressor_equals_websockets(messages, window_bits, takeover, mem_level, level):
    theirs = PerMessageDeflate(False, not takeover, 15, window_bits,
                               {"memLevel": mem_level, "level": level})
    ours = Deflater(window_bits=window_bits, no_context_takeover=not takeover, level=level,
                    mem_level=mem_level)
    inflater = Inflater(window_bits=window_bits, no_context_takeover=not takeover)
    for data in messages:
        frame = theirs.encode(WsFrame(WsOpcode.BINARY, data))
        assert frame.rsv1 and bytes(frame.data) == ours.deflate(data, fin=True)
        assert inflater.inflate(bytes(frame.data), fin=True) == data


@FAST
@given(message=st.binary(max_size=5000), parts=st.integers(1, 5), window_bits=st.integers(9, 15))
def test_websockets_inflates_lablib_fragments(message, parts, window_bits):
    theirs = PerMessageDeflate(False, False, window_bits, 15)
    ours = Deflater(window_bits=window_bits)
    cuts = [len(message) * k // parts for k in range(parts + 1)]
    out = b""
    for n, (a, b) in enumerate(zip(cuts, cuts[1:])):
        fin = n == parts - 1
        opcode = WsOpcode.BINARY if n == 0 else WsOpcode.CONT
        payload = ours.deflate(message[a:b], fin=fin)
        out += bytes(theirs.decode(WsFrame(opcode, payload, fin=fin, rsv1=n == 0)).data)
    assert out == message
