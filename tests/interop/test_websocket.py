"""lablib's WebSocket stack against the reference library, ``websockets``.

Two kinds of checks:

* over 127.0.0.1, in both directions (lablib client -> ``websockets`` server and ``websockets``
  client -> lablib server): messages of every length class, fragmentation, ping/pong, the
  closing handshake with codes and reasons, subprotocols, refused handshakes and protocol errors
  (``@pytest.mark.interop``);
* without sockets: lablib's frame bytes equal ``websockets``' for the same masking key, each
  library parses the other's frames, and both compute the same Sec-WebSocket-Accept.

The project does not depend on pytest-asyncio: each scenario is an ``async def`` wrapped by
:func:`asyncio_test`, which runs it in a fresh event loop with a guard timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import types
from http import HTTPStatus
from urllib.parse import urlsplit

import pytest
import websockets
import websockets.frames
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.uri import parse_uri
from websockets.utils import accept_key as ws_accept_key

from lablib.errors import ConnectionClosed, HandshakeError
from lablib.http import Request, Response
from lablib.lab import ws_echo
from lablib.websocket import (ClientHandshake, FrameParser, Opcode, ServerHandshake, WebSocketState,
                              accept_key, encode_frame, generate_key)
from lablib.websocket.client import connect as lablib_connect
from lablib.websocket.server import serve as lablib_serve
from tests.aio_support import asyncio_test
from tests.wire import KEY, open_upgraded, upgrade_request


# --- servers of both libraries ------------------------------------------------------------------

@contextlib.asynccontextmanager
async def websockets_server(handler, **options):
    """A ``websockets`` server on an ephemeral port; yields its ``ws://`` URI."""
    async with ws_serve(handler, "127.0.0.1", 0, **options) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@contextlib.asynccontextmanager
async def lablib_server(handler, **options):
    """A lablib server on an ephemeral port; yields its ``ws://`` URI."""
    async with lablib_serve(handler, "127.0.0.1", 0, **options) as server:
        yield f"ws://127.0.0.1:{server.port}/"


#: The two directions.  Both clients share the API (``async with connect(uri) as ws``,
#: ``send``/``recv``/``ping``), so one scenario runs against both.
DIRECTIONS = {
    "lablib-client->websockets-server": (lablib_connect, websockets_server, ws_echo),
    "websockets-client->lablib-server": (ws_connect, lablib_server, ws_echo),
}
direction = pytest.mark.parametrize("pair", DIRECTIONS.values(), ids=DIRECTIONS.keys())


# --- payloads ---------------------------------------------------------------------------------

def text_payload(size: int) -> str:
    """A str whose UTF-8 encoding is exactly ``size`` bytes, with 1- to 4-byte characters."""
    raw = ("lablib é € 😀 " * (size // 8 + 1)).encode("utf-8")[:size]
    text = raw.decode("utf-8", "ignore")  # drop a character cut in half at the end
    return text + "x" * (size - len(text.encode("utf-8")))


def binary_payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


#: 0 (empty), the 7-bit maximum, the first 16-bit length, the 16-bit maximum, the first
#: 64-bit length, and 1 MiB (the default max_size of both libraries, so it must pass).
SIZES = [0, 125, 126, 65535, 65536, 1 << 20]


# --- messages, both directions ----------------------------------------------------------------

@pytest.mark.interop
@direction
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
@asyncio_test
async def test_echo_round_trip(pair, kind, size):
    connect, server, echo = pair
    payload = text_payload(size) if kind == "text" else binary_payload(size)
    assert len(payload.encode("utf-8") if kind == "text" else payload) == size
    async with server(echo) as uri, connect(uri) as ws:
        await ws.send(payload)
        answer = await ws.recv()
    assert type(answer) is type(payload)
    assert answer == payload


@pytest.mark.interop
@direction
@asyncio_test
async def test_short_messages_keep_their_order_and_type(pair):
    connect, server, echo = pair
    messages = ["Hello", b"\x00\xff", "", b"", "é", b"\x81\x05Hello"]
    async with server(echo) as uri, connect(uri) as ws:
        for message in messages:
            await ws.send(message)
        answers = [await ws.recv() for _ in messages]
    assert answers == messages
    assert [type(a) for a in answers] == [type(m) for m in messages]


# --- fragmentation (§5.4) -----------------------------------------------------------------------

async def _aiter(items):
    for item in items:
        yield item


def joined(parts):
    """The message the fragments make up."""
    return "".join(parts) if isinstance(parts[0], str) else b"".join(parts)


@pytest.mark.interop
@pytest.mark.parametrize("fragments", [["Hel", "lo ", "wörld"], [b"\x00\x01", b"", b"\x02"]],
                         ids=["text", "binary"])
@pytest.mark.parametrize("as_async", [False, True], ids=["iterable", "async-iterable"])
@asyncio_test
async def test_lablib_client_sends_fragments_websockets_server_sees_each_frame(fragments, as_async):
    received = asyncio.get_running_loop().create_future()

    async def handler(ws):
        parts = [part async for part in ws.recv_streaming()]
        received.set_result(parts)
        await ws.send(parts)  # websockets fragments it back: one frame per item

    async with websockets_server(handler) as uri, lablib_connect(uri) as ws:
        await ws.send(_aiter(fragments) if as_async else fragments)
        assert await received == fragments
        assert await ws.recv() == joined(fragments)


@pytest.mark.interop
@pytest.mark.parametrize("fragments", [["Hel", "lo ", "wörld"], [b"\x00\x01", b"", b"\x02"]],
                         ids=["text", "binary"])
@pytest.mark.parametrize("as_async", [False, True], ids=["iterable", "async-iterable"])
@asyncio_test
async def test_websockets_client_sends_fragments_lablib_server_joins_them(fragments, as_async):
    async def handler(ws):
        message = await ws.recv()
        await ws.send([message[:1], message[1:]])  # answer in two fragments

    async with lablib_server(handler) as uri, ws_connect(uri) as ws:
        await ws.send(_aiter(fragments) if as_async else fragments)
        whole = joined(fragments)
        assert [part async for part in ws.recv_streaming()] == [whole[:1], whole[1:]]


# --- ping / pong (§5.5.2, §5.5.3) -------------------------------------------------------------

@pytest.mark.interop
@direction
@asyncio_test
async def test_client_ping_gets_its_pong(pair):
    connect, server, echo = pair
    async with server(echo) as uri, connect(uri) as ws:
        pong = await ws.ping(b"client ping \x00\xff")
        latency = await pong
        assert latency >= 0
        await ws.send("still open")
        assert await ws.recv() == "still open"


@pytest.mark.interop
@pytest.mark.parametrize("payload", [b"", b"server ping", bytes(range(125))], ids=["0", "11", "125"])
@asyncio_test
async def test_websockets_server_ping_is_answered_by_lablib_client(payload):
    answered = asyncio.get_running_loop().create_future()

    async def handler(ws):
        pong = await ws.ping(payload)
        await pong  # websockets resolves it only for a pong carrying the same payload
        answered.set_result(True)
        await ws.wait_closed()

    async with websockets_server(handler) as uri, lablib_connect(uri):
        assert await answered


@pytest.mark.interop
@pytest.mark.parametrize("payload", [b"", b"server ping", bytes(range(125))], ids=["0", "11", "125"])
@asyncio_test
async def test_lablib_server_ping_is_answered_by_websockets_client(payload):
    async def handler(ws):
        pong = await ws.ping(payload)
        await pong
        await ws.send("pong received")

    async with lablib_server(handler) as uri, ws_connect(uri) as ws:
        assert await ws.recv() == "pong received"


# --- the closing handshake (§7) -------------------------------------------------------------

CLIENT_CLOSES = pytest.mark.parametrize("code, reason", [(1000, "bye"), (4000, "custom")])
SERVER_CLOSES = pytest.mark.parametrize("code, reason", [(1001, "going away"), (3000, "restart")])


@pytest.mark.interop
@CLIENT_CLOSES
@asyncio_test
async def test_lablib_client_closes_websockets_server_observes(code, reason):
    observed = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except websockets.ConnectionClosed as exc:
            observed.set_result((exc.rcvd.code, exc.rcvd.reason))

    async with websockets_server(handler) as uri:
        ws = await lablib_connect(uri)
        await ws.close(code, reason)
        assert await observed == (code, reason)
        # websockets echoes code and reason; TCP is closed once close() returns.
        assert (ws.close_code, ws.close_reason) == (code, reason)
        assert ws.state is WebSocketState.CLOSED


@pytest.mark.interop
@CLIENT_CLOSES
@asyncio_test
async def test_websockets_client_closes_lablib_server_observes(code, reason):
    observed = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            observed.set_result((exc.code, exc.reason))

    async with lablib_server(handler) as uri:
        ws = await ws_connect(uri)
        await ws.close(code, reason)
        assert await observed == (code, reason)
        # lablib echoes the code only (§5.5.1 asks for the code; the reason is optional).
        assert (ws.close_code, ws.close_reason) == (code, "")
        assert ws.state is WsState.CLOSED


@pytest.mark.interop
@SERVER_CLOSES
@asyncio_test
async def test_websockets_server_closes_lablib_client_observes(code, reason):
    async def handler(ws):
        await ws.close(code, reason)

    async with websockets_server(handler) as uri:
        ws = await lablib_connect(uri)
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (code, reason)
        assert info.value.ok == (code == 1001)
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (code, reason)


@pytest.mark.interop
@SERVER_CLOSES
@asyncio_test
async def test_lablib_server_closes_websockets_client_observes(code, reason):
    async def handler(ws):
        await ws.close(code, reason)

    async with lablib_server(handler) as uri:
        ws = await ws_connect(uri)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, reason)
        assert info.value.sent.code == code  # websockets echoed it
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (code, reason)


# --- subprotocols (§4.1, §4.2.2) -------------------------------------------------------------

@pytest.mark.interop
@asyncio_test
async def test_subprotocol_lablib_client_websockets_server():
    chosen = asyncio.get_running_loop().create_future()

    async def handler(ws):
        chosen.set_result(ws.subprotocol)
        await ws.wait_closed()

    async with websockets_server(handler, subprotocols=["chat.v1", "chat.v2"]) as uri:
        async with lablib_connect(uri, subprotocols=["chat.v2", "chat.v1"]) as ws:
            # websockets picks the first of *its* list that the client offered
            assert await chosen == "chat.v1"
            assert ws.subprotocol == "chat.v1"
            assert ws.response.headers.get("Sec-WebSocket-Protocol") == "chat.v1"


@pytest.mark.interop
@asyncio_test
async def test_subprotocol_websockets_client_lablib_server():
    chosen = asyncio.get_running_loop().create_future()

    async def handler(ws):
        chosen.set_result(ws.subprotocol)
        await ws.wait_closed()

    async with lablib_server(handler, subprotocols=["chat.v2"]) as uri:
        async with ws_connect(uri, subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await chosen == "chat.v2"


@pytest.mark.interop
@asyncio_test
async def test_no_common_subprotocol_websockets_server_refuses_lablib_client():
    async with websockets_server(ws_echo, subprotocols=["chat.v1"]) as uri:
        with pytest.raises(HandshakeError) as info:
            await lablib_connect(uri, subprotocols=["mqtt"])
    assert info.value.status == 400


@pytest.mark.interop
@asyncio_test
async def test_no_common_subprotocol_lablib_server_continues_without_one():
    async with lablib_server(ws_echo, subprotocols=["chat.v1"]) as uri:
        async with ws_connect(uri, subprotocols=["mqtt"]) as ws:
            assert ws.subprotocol is None
            assert "Sec-WebSocket-Protocol" not in ws.response.headers
            await ws.send("works")
            assert await ws.recv() == "works"


# --- refused handshakes ---------------------------------------------------------------------

@pytest.mark.interop
@asyncio_test
async def test_lablib_server_origin_allow_list():
    seen = asyncio.get_running_loop().create_future()

    async def handler(ws):
        seen.set_result(ws.origin)

    async with lablib_server(handler, origins=["http://good.example"]) as uri:
        with pytest.raises(InvalidStatus) as info:
            await ws_connect(uri, origin="http://evil.example")
        assert info.value.response.status_code == 403
        assert b"http://evil.example" in info.value.response.body
        async with ws_connect(uri, origin="http://good.example"):
            assert await seen == "http://good.example"


@pytest.mark.interop
@asyncio_test
async def test_websockets_server_process_request_refuses_lablib_client():
    def process_request(connection, request):
        if request.path != "/allowed":
            return connection.respond(HTTPStatus.FORBIDDEN, "no WebSocket here\n")
        return None

    async with websockets_server(ws_echo, process_request=process_request) as uri:
        with pytest.raises(HandshakeError) as info:
            await lablib_connect(uri + "forbidden")
        assert info.value.status == 403
        assert "no WebSocket here" in info.value.reason
        async with lablib_connect(uri + "allowed") as ws:
            await ws.send("in")
            assert await ws.recv() == "in"


# --- raw sockets: what exactly goes on the wire ----------------------------------------------

@pytest.mark.interop
@asyncio_test
async def test_version_8_is_answered_426_with_the_supported_version():
    async with lablib_serve(ws_echo, "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(upgrade_request(host=f"127.0.0.1:{server.port}", version="8"))
        answer = await reader.read()  # the server closes after its answer: read to EOF
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 426 Upgrade Required"
    assert b"Sec-WebSocket-Version: 13" in lines[1:]
    assert b"Sec-WebSocket-Version" in body  # the body says what was wrong


#: A masked text frame (key 00 00 00 00, so the payload reads as is) whose payload is not UTF-8.
INVALID_UTF8_FRAME = b"\x81\x82\x00\x00\x00\x00\xff\xfe"


@pytest.mark.interop
@asyncio_test
async def test_invalid_utf8_gets_a_1007_close_frame_from_both_servers():
    codes = {}
    for name, server in (("lablib", lablib_server), ("websockets", websockets_server)):
        async with server(ws_echo) as uri:
            reader, writer = await open_upgraded(urlsplit(uri).port)
            writer.write(INVALID_UTF8_FRAME)
            answer = await reader.read()  # a close frame, then the server closes TCP
            writer.close()
        # Unmasked (server frame), fin=1, opcode 8; payload = code 1007 + a reason.
        assert answer[0] == 0x88
        assert answer[1] == len(answer) - 2 <= 125
        assert answer[2:4] == b"\x03\xef"
        codes[name] = FrameParser(mask_required=False).receive_data(answer)[0].payload[:2]
    assert codes == {"lablib": b"\x03\xef", "websockets": b"\x03\xef"}


@pytest.mark.interop
@asyncio_test
async def test_lablib_invalid_utf8_close_frame_bytes():
    async with lablib_serve(ws_echo, "127.0.0.1", 0) as server:
        reader, writer = await open_upgraded(server.port)
        writer.write(INVALID_UTF8_FRAME)
        answer = await reader.read()
        writer.close()
    reason = b"text message is not valid UTF-8"
    assert answer == b"\x88" + bytes([2 + len(reason)]) + b"\x03\xef" + reason


# --- message size limits (1009) --------------------------------------------------------------

@pytest.mark.interop
@asyncio_test
async def test_websockets_client_sends_too_big_message_to_lablib_server():
    seen = asyncio.get_running_loop().create_future()

    async def handler(ws):
        sizes = []
        try:
            while True:
                sizes.append(len(await ws.recv()))
        except ConnectionClosed as exc:
            seen.set_result((sizes, exc.code))

    async with lablib_server(handler, max_size=1000) as uri, ws_connect(uri) as ws:
        await ws.send(b"x" * 1000)  # exactly the limit passes
        await ws.send(b"x" * 1001)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd.code == 1009
        assert await seen == ([1000], 1009)


@pytest.mark.interop
@asyncio_test
async def test_lablib_client_receives_too_big_message_from_websockets_server():
    seen = asyncio.get_running_loop().create_future()

    async def handler(ws):
        await ws.send(b"y" * 1000)
        await ws.send(b"y" * 1001)
        try:
            await ws.recv()
        except websockets.ConnectionClosed as exc:
            seen.set_result(exc.rcvd.code)

    async with websockets_server(handler) as uri:
        ws = await lablib_connect(uri, max_size=1000)
        assert await ws.recv() == b"y" * 1000  # exactly the limit passes
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.code == 1009
        assert await seen == 1009
        await ws.wait_closed()


# --- byte-for-byte: frames (§5.2) --------------------------------------------------------------

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 100000]
MASKING_KEY = b"\x37\xfa\x21\x3d"  # the key of the RFC 6455 §5.7 examples


def _frame_cases():
    for opcode in Opcode:
        for length in LENGTHS:
            for fin in (True, False):
                if opcode.is_control and (length > 125 or not fin):
                    continue  # §5.5: control frames are short and never fragmented
                for masked in (False, True):
                    yield pytest.param(opcode, length, fin, masked,
                                       id=f"{opcode.name}-{length}-{'fin' if fin else 'nofin'}"
                                          f"-{'masked' if masked else 'unmasked'}")


FRAME_CASES = list(_frame_cases())


@pytest.fixture
def websockets_mask(monkeypatch):
    """Make ``websockets.frames`` draw MASKING_KEY instead of a random key."""
    monkeypatch.setattr(websockets.frames, "secrets",
                        types.SimpleNamespace(token_bytes=lambda n: MASKING_KEY[:n]))


def websockets_parse(data: bytes, mask: bool) -> websockets.frames.Frame:
    """Run websockets' generator-based parser over complete data."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = websockets.frames.Frame.parse(reader.read_exact, mask=mask)
    with pytest.raises(StopIteration) as done:
        next(parser)  # all the data is there: it must finish without asking for more
    assert reader.buffer == b""  # and consume exactly one frame
    return done.value.value


@pytest.mark.parametrize("opcode, length, fin, masked", FRAME_CASES)
def test_encoding_equals_websockets(websockets_mask, opcode, length, fin, masked):
    payload = binary_payload(length)
    ours = encode_frame(opcode, payload, fin=fin, masking_key=MASKING_KEY if masked else None)
    theirs = websockets.frames.Frame(websockets.frames.Opcode(opcode), payload, fin) \
        .serialize(mask=masked, extensions=[])
    assert ours == theirs


@pytest.mark.parametrize("opcode, length, fin, masked", FRAME_CASES)
def test_lablib_parses_websockets_frames(websockets_mask, opcode, length, fin, masked):
    payload = binary_payload(length)
    data = websockets.frames.Frame(websockets.frames.Opcode(opcode), payload, fin) \
        .serialize(mask=masked, extensions=[])
    parser = FrameParser(mask_required=masked)
    [frame] = parser.receive_data(data)
    assert parser.buffered == 0
    assert (frame.opcode, frame.payload, frame.fin) == (opcode, payload, fin)
    assert (frame.rsv1, frame.rsv2, frame.rsv3) == (False, False, False)
    assert frame.masking_key == (MASKING_KEY if masked else None)


@pytest.mark.parametrize("opcode, length, fin, masked", FRAME_CASES)
def test_websockets_parses_lablib_frames(opcode, length, fin, masked):
    payload = binary_payload(length)
    data = encode_frame(opcode, payload, fin=fin, masking_key=MASKING_KEY if masked else None)
    frame = websockets_parse(data, mask=masked)
    assert (int(frame.opcode), bytes(frame.data), frame.fin) == (opcode, payload, fin)
    assert (frame.rsv1, frame.rsv2, frame.rsv3) == (False, False, False)


def test_rfc_example_frames_match():
    """§5.7: "Hello" unmasked and masked with 37 fa 21 3d, as both libraries write them."""
    assert encode_frame(Opcode.TEXT, b"Hello") == b"\x81\x05Hello"
    assert encode_frame(Opcode.TEXT, b"Hello", masking_key=MASKING_KEY) \
        == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    assert websockets_parse(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", mask=True).data \
        == b"Hello"


# --- byte-for-byte: the opening handshake (§4) ---------------------------------------------

@pytest.mark.parametrize("key", [KEY] + [generate_key(random.Random(seed)) for seed in range(5)])
def test_accept_key_equals_websockets(key):
    assert accept_key(key) == ws_accept_key(key)


def test_rfc_accept_key():
    assert accept_key(KEY) == ws_accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_lablib_client_handshake_with_websockets_sans_io_server():
    client = ClientHandshake(host="127.0.0.1:8765", path="/chat", subprotocols=["chat.v1"],
                             rng=random.Random(1))
    server = ServerProtocol(subprotocols=["chat.v1"])
    server.receive_data(client.request_bytes())
    [request] = server.events_received()
    assert request.headers["Sec-WebSocket-Key"] == client.key
    server.send_response(server.accept(request))
    response = client.receive_data(b"".join(server.data_to_send()))
    assert isinstance(response, Response) and response.status == 101
    assert response.headers.get("Sec-WebSocket-Accept") == accept_key(client.key)
    assert client.subprotocol == "chat.v1"
    assert server.state is WsState.OPEN


def test_websockets_client_handshake_with_lablib_server():
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8765/chat"), subprotocols=["chat.v1"])
    client.send_request(client.connect())
    server = ServerHandshake(subprotocols=["chat.v1"])
    request = server.receive_data(b"".join(client.data_to_send()))
    assert isinstance(request, Request) and request.path == "/chat"
    assert server.subprotocol == "chat.v1"
    client.receive_data(server.accept())
    [response] = client.events_received()
    assert response.status_code == 101
    assert client.state is WsState.OPEN
    assert client.subprotocol == "chat.v1"
