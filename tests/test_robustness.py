"""Adversarial tests of the three asyncio servers, from the network side.

The rule under test (the project's design rules, "bad input"): a peer that sends garbage gets the spec's answer -
an HTTP status and body, a close frame with the right code, the Engine.IO error JSON, a
CONNECT_ERROR - and nothing else.  The process never crashes, never hangs, never grows memory
without bound, and never sends a Python traceback to the peer.

Every scenario starts a real server on 127.0.0.1 and attacks it with raw sockets:

* :mod:`lablib.websocket.server` (``ws``), :mod:`lablib.engineio.server` (``eio``) and
  :mod:`lablib.socketio.server` (``sio``) get the same HTTP-level attacks: garbage instead of
  HTTP, an endless header line, a slowloris, a body that does not match its Content-Length,
  pipelined requests, 200 connections that send nothing, a reset in the middle of a frame;
* Engine.IO gets its own: bodies over maxPayload, binary garbage as a polling payload, unknown
  sids, invalid packets over the WebSocket transport;
* Socket.IO gets malformed packets: an event name that is not a string, a bad attachment
  count, an attachment nobody announced, too many attachments, text that is not JSON, an ack
  id of 400 digits, an unknown namespace, a second CONNECT;
* clients that never read: the server's write buffer must stay bounded (backpressure), and
  the keepalive must still drop them.

After each attack a fresh, legitimate client must be served.  Each scenario runs in its own
event loop whose exception handler records what asyncio would otherwise print ("Task exception
was never retrieved", "Exception in callback ..."); that record, and the log at ERROR level,
must stay empty.  Timeouts are guards against hangs, never measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import logging
import random

import pytest

from lablib.engineio.server import Server as EngineServer
from lablib.engineio.server import serve as engine_serve
from lablib.socketio.server import Server as SocketServer
from lablib.socketio.server import serve as socket_serve
from lablib.websocket.client import connect
from lablib.websocket.server import serve as ws_serve
from tests import wire
from tests.aio_support import run_guarded, until
from tests.wire import (KEY, WAIT, body_of, eio_target, masked, polling_handshake, request, status,
                        upgrade_request)

TIMEOUT = 0.3          #: the servers' request/open/close timeouts in these tests (seconds)

#: What must never appear in bytes sent to a peer: a Python traceback or a repr of a buffer.
LEAKS = (b"Traceback", b'File "', b"bytearray(", b"Error:", b"lablib/")


# --- the harness: a fresh loop per scenario, whose exception handler records everything --------

class Peers:
    """Every raw connection of a scenario, so the end can check all bytes sent to the peers."""

    def __init__(self) -> None:
        self.all: list[Peer] = []


_peers = Peers()


def attack(scenario):
    """A plain pytest test running ``async def scenario(...)`` in a watched event loop.

    The loop's exception handler records what asyncio would report ("Task exception was never
    retrieved", "Exception in callback"); the test fails if it recorded anything, if anything
    was logged at ERROR, or if a peer received a traceback.
    """

    async def watched(errors: list[dict], *args, **kwargs):
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        await scenario(*args, **kwargs)

    @functools.wraps(scenario)
    def test(caplog, *args, **kwargs):
        errors: list[dict] = []
        _peers.all = []
        with caplog.at_level(logging.INFO):
            run_guarded(watched(errors, *args, **kwargs))
            gc.collect()   # a task whose exception nobody retrieved reports it when collected
        assert errors == [], f"asyncio reported: {[e.get('message') for e in errors]}"
        bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert bad == [], f"logged at ERROR: {[r.getMessage() for r in bad]}"
        for peer in _peers.all:
            for leak in LEAKS:
                assert leak not in bytes(peer.received), (leak, bytes(peer.received)[:500])

    # pytest reads the signature to pass fixtures and parameters: the scenario's, plus caplog
    signature = inspect.signature(scenario)
    caplog = inspect.Parameter("caplog", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    test.__signature__ = signature.replace(parameters=[caplog, *signature.parameters.values()])
    return test


# --- a raw TCP peer, recorded for the leak check -------------------------------------------------

class Peer(wire.Peer):
    """A :class:`tests.wire.Peer` the scenario's end checks for leaks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        _peers.all.append(self)


class RawWebSocket(wire.RawWebSocket):
    """A :class:`tests.wire.RawWebSocket` over a recorded :class:`Peer`."""

    peer_type = Peer


# --- the three servers, and what a legitimate client expects of each ---------------------------

async def echo(ws) -> None:
    async for message in ws:
        await ws.send(message)


def ws_server(**options):
    options = {"open_timeout": TIMEOUT, "close_timeout": TIMEOUT, "ping_interval": None,
               "max_request_size": 1024, "max_size": 4096, "rng": random.Random(1), **options}
    return ws_serve(echo, "127.0.0.1", 0, **options)


def eio_server(**settings) -> EngineServer:
    settings = {"request_timeout": TIMEOUT, "close_timeout": TIMEOUT, "max_request_size": 1024,
                "max_payload": 4096, "rng": random.Random(1), **settings}
    server = EngineServer(**settings)

    async def message(sid, data):
        await server.send(sid, data)

    server.on("message", message)
    return server


def sio_server(**settings) -> SocketServer:
    settings = {"request_timeout": TIMEOUT, "close_timeout": TIMEOUT, "max_request_size": 1024,
                "max_payload": 4096, "rng": random.Random(1), **settings}
    sio = SocketServer(**settings)
    sio.on("echo", lambda sid, *args: args)
    return sio


@contextlib.asynccontextmanager
async def running(kind: str, **settings):
    """Start the ``kind`` server ("ws", "eio", "sio"); yield (port, the server object)."""
    if kind == "ws":
        async with ws_server(**settings) as server:
            yield server.port, server
    elif kind == "eio":
        server = eio_server(**settings)
        async with engine_serve(server, "127.0.0.1", 0):
            yield server.port, server
    else:
        sio = sio_server(**settings)
        async with socket_serve(sio, "127.0.0.1", 0):
            yield sio.port, sio


async def legit(kind: str, port: int) -> None:
    """A well-behaved client of the ``kind`` server gets its echo back."""
    if kind == "ws":
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT, close_timeout=WAIT,
                           ping_interval=None, rng=random.Random(2)) as ws:
            await ws.send("hello")
            async with asyncio.timeout(WAIT):
                assert await ws.recv() == "hello"
        return
    peer = await Peer.open(port)
    if kind == "eio":
        sid = await polling_handshake(peer)
        head, body = await peer.request("POST", eio_target(sid=sid), b"4hello")
        assert (status(head), body) == (b"HTTP/1.1 200 OK", b"ok")
        assert (await peer.request("GET", eio_target(sid=sid)))[1] == b"4hello"
    else:
        sid = await polling_handshake(peer, "/socket.io/")
        assert (await peer.request("POST", eio_target("/socket.io/", sid=sid), b"40"))[1] == b"ok"
        head, body = await peer.request("GET", eio_target("/socket.io/", sid=sid))
        assert body.startswith(b'40{"sid":"'), body
        assert (await peer.request("POST", eio_target("/socket.io/", sid=sid),
                                   b'421["echo","hi"]'))[1] == b"ok"
        assert (await peer.request("GET", eio_target("/socket.io/", sid=sid)))[1] == b'431["hi"]'
    # leave with a close packet: a shutdown then has no polling session left to wait for
    path = "/engine.io/" if kind == "eio" else "/socket.io/"
    assert (await peer.request("POST", eio_target(path, sid=sid), b"1"))[1] == b"ok"
    peer.close()


KINDS = ["ws", "eio", "sio"]
TARGETS = {"ws": "/", "eio": eio_target(), "sio": eio_target("/socket.io/")}


# === HTTP: the same attacks on the three servers ==================================================

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("garbage", [
    pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
                 id="tls-hello"),
    pytest.param(b"\x82\x85\x00\x00\x00\x00hello\r\n\r\n", id="ws-frame"),
    pytest.param(b"GET / HTTP/1.1\r\nHost x\r\n\r\n", id="header-without-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n", id="nul-in-header"),
    pytest.param(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", id="two-lengths"),
    pytest.param(b"\r\n\r\n\r\n", id="empty-lines"),
])
@attack
async def test_garbage_instead_of_http_gets_400_and_close(kind, garbage):
    async with running(kind) as (port, _):
        peer = await Peer.open(port)
        peer.send(garbage)
        answer = await peer.read_all()
        assert status(answer) == b"HTTP/1.1 400 Bad Request", answer
        assert b"Connection: close" in answer
        await legit(kind, port)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["request-line", "header-line"])
@attack
async def test_an_endless_line_gets_431_and_close(kind, where):
    async with running(kind) as (port, _):
        peer = await Peer.open(port)
        if where == "request-line":
            peer.send(b"GET /" + b"a" * 4000)
        else:
            peer.send(f"GET {TARGETS[kind]} HTTP/1.1\r\nHost: x\r\nX-Endless: ".encode() + b"a" * 4000)
        answer = await peer.read_all()
        assert status(answer) == b"HTTP/1.1 431 Request Header Fields Too Large", answer
        assert b"Connection: close" in answer
        await legit(kind, port)


@pytest.mark.parametrize("kind", KINDS)
@attack
async def test_slowloris_is_cut_off_by_the_request_timeout(kind):
    """Headers trickled a byte at a time: the server closes the connection when its timeout
    (``open_timeout`` / ``request_timeout``) runs out, whatever the trickle."""
    async with running(kind) as (port, _):
        peer = await Peer.open(port)
        trickle = upgrade_request(TARGETS[kind])[:-2]   # never the final empty line
        closed = False
        for byte in trickle * 10:
            if peer.writer.is_closing():
                break
            peer.send(bytes([byte]))
            try:
                async with asyncio.timeout(0.02):
                    data = await peer.reader.read(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            peer.received += data
            if not data:
                closed = True
                break
        assert closed, "the server let a slowloris trickle on"
        assert peer.received == b""   # cut off silently: no answer owed to half a request
        await legit(kind, port)


@pytest.mark.parametrize("kind", KINDS)
@attack
async def test_a_body_shorter_than_its_content_length_times_out(kind):
    async with running(kind) as (port, _):
        peer = await Peer.open(port)
        if kind == "ws":
            # an upgrade request may carry no body at all: a Content-Length of 100 is refused
            # on the header block, before any body (issue 9), so nothing is left to time out
            peer.send(upgrade_request("/")[:-2] + b"Content-Length: 100\r\n\r\n")
            assert status(await peer.read_all()).startswith(b"HTTP/1.1 413 ")
        else:
            peer.send(request("POST", TARGETS[kind] + "&sid=whatever", b"4short",
                              headers=[("Content-Length", "100")]))
            assert await peer.read_all() == b""   # cut off after the timeout
        await legit(kind, port)


@attack
async def test_websocket_handshake_with_a_body_is_refused():
    """A GET upgrade carrying a body: the body is not allowed (max_body_size 0) -> 413."""
    async with running("ws") as (port, _):
        peer = await Peer.open(port)
        peer.send(upgrade_request("/")[:-2] + b"Content-Length: 5\r\n\r\nhello")
        answer = await peer.read_all()
        assert status(answer).startswith(b"HTTP/1.1 413 "), answer
        await legit("ws", port)


@pytest.mark.parametrize("kind", ["eio", "sio"])
@attack
async def test_a_body_longer_than_its_content_length_is_the_next_request(kind):
    """The extra bytes after a POST's body are the start of the next request; as HTTP they are
    garbage: the POST is answered, then the garbage gets 400 and the connection closes."""
    async with running(kind) as (port, _):
        peer = await Peer.open(port)
        path = TARGETS[kind].split("?")[0]
        sid = await polling_handshake(peer, path)
        peer.send(request("POST", eio_target(path, sid=sid), b"4hello-and-more-than-advertised\r\n\r\n",
                          headers=[("Content-Length", "6")]))
        head, body = await peer.answer()
        assert (status(head), body) == (b"HTTP/1.1 200 OK", b"ok")
        answer = await peer.read_all()
        assert status(answer) == b"HTTP/1.1 400 Bad Request", answer
        await legit(kind, port)


@attack
async def test_pipelined_polling_requests_are_answered_in_order():
    async with running("eio") as (port, server):
        peer = await Peer.open(port)
        sid = await polling_handshake(peer)
        target = eio_target(sid=sid)
        peer.send(request("POST", target, b"4one") + request("POST", target, b"4two\x1e4three")
                  + request("GET", target) + request("GET", "/elsewhere"))
        answers = [await peer.answer() for _ in range(4)]
        assert [a[1] for a in answers] == [b"ok", b"ok", b"4one\x1e4two\x1e4three", b"Not Found"]
        assert status(answers[3][0]) == b"HTTP/1.1 404 Not Found"
        await legit("eio", port)


@attack
async def test_frames_pipelined_behind_the_upgrade_request_are_not_lost():
    async with running("ws") as (port, _):
        peer = await Peer.open(port)
        peer.send(upgrade_request("/") + masked(0x1, b"first") + masked(0x1, b"second"))
        answer = b""
        while answer.count(b"first") == 0 or answer.count(b"second") == 0:
            data = await peer.read()
            assert data
            answer += data
        assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert body_of(answer) == b"\x81\x05first\x81\x06second"
        peer.close()


@pytest.mark.parametrize("kind", KINDS)
@attack
async def test_two_hundred_silent_connections(kind):
    """200 TCP connections that send nothing: a new client is served meanwhile, and the
    server closes all of them when their timeout runs out."""
    async with running(kind) as (port, _):
        silent = await asyncio.gather(*(Peer.open(port) for _ in range(200)))
        await legit(kind, port)
        answers = await asyncio.gather(*(peer.read_all() for peer in silent))
        assert answers == [b""] * 200
        await legit(kind, port)


@pytest.mark.parametrize("kind", KINDS)
@attack
async def test_reset_in_the_middle_of_a_frame(kind):
    """The peer aborts with a RST after half a frame: the server forgets the connection."""
    async with running(kind) as (port, server):
        ws = await RawWebSocket.open(port, TARGETS[kind].replace("polling", "websocket"))
        if kind != "ws":
            assert isinstance(await ws.message(), str)   # the open packet
        if kind == "sio":
            ws.send_text("40")
            assert (await ws.message()).startswith('40{"sid":"')
        ws.peer.send(masked(0x1, b"4" + b"x" * 1000)[:500])
        await asyncio.sleep(0.05)
        ws.peer.reset()
        if kind == "ws":
            await until(lambda: not server.connections)
        elif kind == "eio":
            await until(lambda: not server.sessions)
        else:
            await until(lambda: not server.eio.sessions and not server.core.sids("/"))
        await legit(kind, port)


# === Engine.IO ====================================================================================

@pytest.mark.parametrize("kind", ["eio", "sio"])
@attack
async def test_unknown_sid_gets_400_code_1(kind):
    async with running(kind) as (port, _):
        path = TARGETS[kind].split("?")[0]
        peer = await Peer.open(port)
        for method, body in (("GET", b""), ("POST", b"4hello")):
            head, answer = await peer.request(method, eio_target(path, sid="AAAAAAAAAAAAAAAAAAAA"), body)
            assert status(head) == b"HTTP/1.1 400 Bad Request"
            assert b"Content-Type: application/json" in head
            assert answer == b'{"code":1,"message":"Session ID unknown"}'
        peer.send(upgrade_request(eio_target(path, "websocket", sid="AAAAAAAAAAAAAAAAAAAA")))
        answer = await peer.read_all()
        assert status(answer) == b"HTTP/1.1 400 Bad Request"
        assert body_of(answer) == b"Session ID unknown"
        await legit(kind, port)


@pytest.mark.parametrize("chunked", [False, True])
@attack
async def test_a_post_over_max_payload_is_413_and_the_session_lives_on(chunked):
    async with running("eio") as (port, server):
        peer = await Peer.open(port)
        sid = await polling_handshake(peer)
        body = b"4" + b"x" * 10_000   # max_payload is 4096
        if chunked:
            peer.send(request("POST", eio_target(sid=sid), headers=[("Transfer-Encoding", "chunked")])
                      + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                                 for i in range(0, len(body), 1000)) + b"0\r\n\r\n")
        else:
            peer.send(request("POST", eio_target(sid=sid), body))
        answer = await peer.read_all()
        assert status(answer).startswith(b"HTTP/1.1 413 "), answer
        assert sid in server.sessions
        await legit("eio", port)


@pytest.mark.parametrize("body", [
    pytest.param(bytes(range(256)) * 4, id="binary"),
    pytest.param(b"\xff\xfe4hello", id="bad-utf8"),
    pytest.param(b"9x", id="unknown-type"),
    pytest.param(b"4a\x1e\x1e4b", id="empty-piece"),
    pytest.param(b"b!!!not-base64", id="bad-base64"),
    pytest.param(b"4a\x1e", id="trailing-separator"),
])
@attack
async def test_garbage_polling_body_is_400_code_3_and_ends_the_session(body):
    async with running("eio") as (port, server):
        peer = await Peer.open(port)
        sid = await polling_handshake(peer)
        head, answer = await peer.request("POST", eio_target(sid=sid), body,
                                          headers=[("Content-Type", "text/plain;charset=UTF-8")])
        assert (status(head), answer) == (b"HTTP/1.1 400 Bad Request", b'{"code":3,"message":"Bad request"}')
        head, answer = await peer.request("GET", eio_target(sid=sid))
        assert answer == b'{"code":1,"message":"Session ID unknown"}'
        assert sid not in server.sessions
        await legit("eio", port)


@pytest.mark.parametrize("message", [
    pytest.param("9x", id="unknown-type"),
    pytest.param("", id="empty-text"),
    pytest.param("bnot base64", id="text-b-prefix"),
])
@attack
async def test_invalid_engineio_packet_over_websocket_closes_the_session(message):
    async with running("eio") as (port, server):
        ws = await RawWebSocket.open(port, eio_target(transport="websocket"))
        assert (await ws.message()).startswith('0{"sid":"')
        ws.send_text(message)
        closed = await ws.closed()
        assert closed.code == 1000   # the Engine.IO session closes its WebSocket
        await until(lambda: not server.sessions)
        await legit("eio", port)


@attack
async def test_invalid_websocket_frames_get_their_close_code():
    """RFC 6455 on the Engine.IO transport: an unmasked frame 1002, bad UTF-8 1007, a message
    over maxPayload 1009, a reserved opcode 1002."""
    async with running("eio") as (port, server):
        for frame, code in ((b"\x81\x02hi", 1002),                       # not masked
                            (masked(0x1, b"4\xff\xfe"), 1007),            # not UTF-8
                            (masked(0x2, b"x" * 5000), 1009),             # over max_payload
                            (masked(0x3, b"x"), 1002),                    # reserved opcode
                            (bytes([0xC1, 0x81, 0, 0, 0, 0]) + b"4", 1002)):  # rsv1 without extension
            ws = await RawWebSocket.open(port, eio_target(transport="websocket"))
            assert (await ws.message()).startswith('0{"sid":"')
            ws.peer.send(frame)
            assert (await ws.closed()).code == code
        await until(lambda: not server.sessions)
        await legit("eio", port)


@attack
async def test_a_binary_frame_before_the_probe_aborts_the_upgrade_only():
    async with running("eio") as (port, server):
        peer = await Peer.open(port)
        sid = await polling_handshake(peer)
        ws = await RawWebSocket.open(port, eio_target(transport="websocket", sid=sid))
        ws.send_binary(b"\x00\x01garbage")
        await ws.closed()
        # the session goes on over polling
        assert (await peer.request("POST", eio_target(sid=sid), b"4still")) [1] == b"ok"
        assert (await peer.request("GET", eio_target(sid=sid)))[1] == b"4still"
        await legit("eio", port)


# === Socket.IO ====================================================================================

async def sio_websocket(port: int) -> RawWebSocket:
    ws = await RawWebSocket.open(port, eio_target("/socket.io/", "websocket"))
    assert (await ws.message()).startswith('0{"sid":"')
    ws.send_text("40")
    assert (await ws.message()).startswith('40{"sid":"')
    return ws


@pytest.mark.parametrize("messages", [
    pytest.param(["42[1,2]"], id="event-name-not-a-string"),
    pytest.param(['45-["x",{"_placeholder":true,"num":0}]'], id="attachment-count-missing"),
    pytest.param([b"\x01\x02"], id="unannounced-attachment"),
    pytest.param(['411-["x"' + ',{"_placeholder":true,"num":0}' * 11 + "]"], id="11-attachments"),
    pytest.param(['42["echo",'], id="not-json"),
    pytest.param(["42" + "1" * 400 + '["echo"]'], id="ack-id-400-digits"),
    pytest.param(["42[" + "[" * 100_000 + "]" * 100_000 + "]"], id="nested-too-deep"),
    pytest.param(["4"], id="no-type"),
    pytest.param(["49"], id="unknown-type"),
    pytest.param(['44{"message":"x"}'], id="client-connect-error"),
    pytest.param(['451-["x",{"_placeholder":true,"num":0}]', '42["echo"]'], id="text-instead-of-attachment"),
])
@attack
async def test_invalid_socketio_packet_closes_the_connection(messages):
    async with running("sio", max_payload=1_000_000) as (port, sio):
        ws = await sio_websocket(port)
        for message in messages:
            if isinstance(message, str):
                ws.send_text(message)
            else:
                ws.send_binary(message)
        closed = await ws.closed()
        assert closed.code == 1000
        await until(lambda: not sio.eio.sessions and not sio.core.sids("/"))
        await legit("sio", port)


@attack
async def test_invalid_socketio_packet_over_polling_closes_the_session():
    async with running("sio") as (port, sio):
        peer = await Peer.open(port)
        sid = await polling_handshake(peer, "/socket.io/")
        target = eio_target("/socket.io/", sid=sid)
        assert (await peer.request("POST", target, b"40"))[1] == b"ok"
        assert (await peer.request("GET", target))[1].startswith(b'40{"sid":"')
        assert (await peer.request("POST", target, b"42[1,2]"))[1] == b"ok"
        assert (await peer.request("GET", target))[1] == b"1"   # the Engine.IO close packet
        assert (await peer.request("GET", target))[1] == b'{"code":1,"message":"Session ID unknown"}'
        await legit("sio", port)


@attack
async def test_unknown_namespace_and_second_connect_get_connect_error():
    async with running("sio") as (port, sio):
        ws = await sio_websocket(port)
        ws.send_text("40/nowhere,")
        assert await ws.message() == '44/nowhere,{"message":"Invalid namespace"}'
        ws.send_text("40")
        assert await ws.message() == '44{"message":"Already connected"}'
        ws.send_text('421["echo","still here"]')
        assert await ws.message() == '431["still here"]'
        await legit("sio", port)


# === clients that never read ======================================================================

def write_buffer_bound() -> int:
    """What a server may hold for one peer that reads nothing: the transport's high-water mark
    (64 KiB by default) plus one read's worth of answers plus one message, with room to spare."""
    return 512 * 1024


async def fill_until_stuck(progress, limit: float = 3.0) -> None:
    """Wait until ``progress()`` stops moving (the sender is blocked) or ``limit`` s pass."""
    loop = asyncio.get_running_loop()
    last, stable_since, start = progress(), loop.time(), loop.time()
    while loop.time() - stable_since < 0.2 and loop.time() - start < limit:
        await asyncio.sleep(0.02)
        if progress() != last:
            last, stable_since = progress(), loop.time()


@pytest.mark.parametrize("kind", ["ws", "eio"])
@attack
async def test_a_ping_flood_from_a_peer_that_never_reads_is_bounded(kind):
    """Every ping gets a pong; a peer that pings without reading must not make the server
    buffer pongs without bound: the server stops reading from it while its writes are stuck."""
    async with running(kind, **({"max_size": 1 << 20} if kind == "ws" else {})) as (port, server):
        peer = await Peer.open(port, rcvbuf=4096)
        peer.send(upgrade_request(TARGETS[kind].replace("polling", "websocket")))
        await asyncio.sleep(0.05)
        transports = []
        if kind == "ws":
            await until(lambda: server.connections)
            transports = [ws.transport for ws in server.connections]
        else:
            await until(lambda: server.sessions)
            transports = [c.transport for c in server._connections]
        flood = masked(0x9, b"p" * 125) * 512   # 66 KiB of pings -> 65 KiB of pongs
        sent = 0
        for _ in range(200):   # up to 13 MiB
            peer.send(flood)
            sent += len(flood)
            try:
                async with asyncio.timeout(0.2):
                    await peer.writer.drain()
            except TimeoutError:
                break   # the server stopped reading: backpressure reached us
        buffered = max(t.get_write_buffer_size() for t in transports)
        assert buffered <= write_buffer_bound(), (buffered, sent)
        peer.reset()
        await legit(kind, port)


@attack
async def test_a_websocket_peer_that_never_reads_stalls_the_sender_and_is_dropped():
    """The handler sends 16 KiB messages forever to a peer that reads nothing: send() waits
    (the buffer stays bounded), and the keepalive drops the peer when no pong comes."""
    sent = []
    done = asyncio.Event()

    async def firehose(ws):
        try:
            while True:
                await ws.send(b"x" * 16384)
                sent.append(1)
        except Exception as exc:   # ConnectionClosed: the keepalive gave up on the peer
            sent.append(exc)
        finally:
            done.set()

    async with ws_serve(firehose, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.2,
                        close_timeout=TIMEOUT, rng=random.Random(1)) as server:
        peer = await Peer.open(server.port, rcvbuf=4096)
        peer.send(upgrade_request("/"))
        await until(lambda: server.connections)
        transport = next(iter(server.connections)).transport
        await fill_until_stuck(lambda: len(sent))
        assert transport.get_write_buffer_size() <= write_buffer_bound()
        async with asyncio.timeout(WAIT):
            await done.wait()
        assert type(sent[-1]).__name__ == "ConnectionClosed"
        peer.close()
        # A client that reads is served; it closes while the firehose still fills its queue,
        # and must still see the server's close frame (a full queue does not stop its reading).
        async with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None,
                           close_timeout=WAIT, rng=random.Random(2)) as ws:
            async with asyncio.timeout(WAIT):
                assert await ws.recv() == b"x" * 16384
            await asyncio.sleep(0.05)   # the queue fills up (max_queue=16), reading pauses
        assert ws.close_code == 1000


@pytest.mark.parametrize("kind", ["eio", "sio"])
@attack
async def test_an_engineio_peer_that_never_reads_stalls_the_sender_and_is_dropped(kind):
    """The application sends 16 KiB messages forever to a WebSocket client that reads nothing:
    ``send()``/``emit()`` wait (the buffer stays bounded), and the heartbeat drops the client
    ("ping timeout") since its pongs never come."""
    loop = asyncio.get_running_loop()
    sent: list = []
    gone = loop.create_future()
    settings = {"ping_interval": 200, "ping_timeout": 200, "max_payload": 1_000_000}
    async with running(kind, **settings) as (port, server):
        eio = server if kind == "eio" else server.eio
        victim: list[str] = []

        def connected() -> bool:
            return victim[0] in eio.sessions if kind == "eio" else server.core.is_connected(victim[0])

        async def firehose():
            await until(connected)
            while connected():
                if kind == "eio":
                    await eio.send(victim[0], "x" * 16384)
                else:
                    await server.emit("data", "x" * 16384, to=victim[0])
                sent.append(1)

        def on_connect(sid, request):
            if not victim:   # only the first client (the legitimate one comes later)
                victim.append(sid)
                tasks.append(loop.create_task(firehose()))

        def on_disconnect(sid, reason):
            if victim and sid == victim[0] and not gone.done():
                gone.set_result(reason)

        tasks: list[asyncio.Task] = []
        (eio if kind == "eio" else server).on("connect", on_connect)
        (eio if kind == "eio" else server).on("disconnect", on_disconnect)
        peer = await Peer.open(port, rcvbuf=4096)
        peer.send(upgrade_request(TARGETS[kind].replace("polling", "websocket")))
        if kind == "sio":
            peer.send(masked(0x1, b"40"))
        await until(lambda: sent)
        await fill_until_stuck(lambda: len(sent))
        buffered = max(c.transport.get_write_buffer_size() for c in eio._connections)
        assert buffered <= write_buffer_bound()
        async with asyncio.timeout(WAIT):
            assert await gone == "ping timeout"
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*tasks)   # the sender is released
        peer.close()
        await legit(kind, port)


@attack
async def test_a_polling_client_that_never_polls_is_dropped_when_its_buffer_is_full():
    """Packets for a polling client wait for its next GET; past ``max_buffered_packets`` the
    session closes ("transport error") instead of buffering on."""
    reasons: list[str] = []
    async with running("eio", max_buffered_packets=100) as (port, server):
        server.on("disconnect", lambda sid, reason: reasons.append(reason))
        peer = await Peer.open(port)
        sid = await polling_handshake(peer)
        for _ in range(1000):
            await server.send(sid, "x" * 1000)
        assert reasons == ["transport error"] and sid not in server.sessions
        head, body = await peer.request("GET", eio_target(sid=sid))
        assert body == b'{"code":1,"message":"Session ID unknown"}'
        await legit("eio", port)


@attack
async def test_a_polling_client_that_never_reads_its_answer_is_let_go():
    async with running("eio", ping_interval=200, ping_timeout=200) as (port, server):
        peer = await Peer.open(port, rcvbuf=4096)
        sid = await polling_handshake(peer)
        for _ in range(1000):   # 16 MB: more than the kernel's socket buffers take
            await server.send(sid, "x" * 16384)
        peer.send(request("GET", eio_target(sid=sid)))
        await until(lambda: sid not in server.sessions)   # the heartbeat gave up on it
        async with asyncio.timeout(2.0):   # request_timeout + close_timeout, with room to spare
            while server._connections:
                await asyncio.sleep(0.02)
        await legit("eio", port)


# --- a seeded fuzz over real sockets: never a 5xx (issue 9) --------------------------------------

def fuzz_request(rng: random.Random, sids: list[str]) -> tuple[str, bytes]:
    """One random request (method, bytes): methods, paths, query strings, headers and bodies
    drawn around what the Engine.IO router looks at."""
    method = rng.choice(["GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "BREW"])
    path = rng.choice(["/engine.io/", "/engine.io/", "/engine.io", "/engine.io/x/y", "/", "/favicon.ico",
                       "/socket.io/"])
    values = ["4", "3", "", "%00", "%ff", "polling", "websocket", "x" * 40, "4%00", "&", "=="] + sids
    pairs = [(rng.choice(["EIO", "transport", "sid", "t", "b64", "j", "EIO", "sid"]), rng.choice(values))
             for _ in range(rng.randrange(0, 5))]
    if rng.random() < 0.6:  # most requests look like Engine.IO
        pairs += [("EIO", rng.choice(["4", "4", "%00", "5"])), ("transport", rng.choice(["polling", "websocket"]))]
        if sids and rng.random() < 0.7:
            pairs.append(("sid", rng.choice(sids)))
    rng.shuffle(pairs)
    target = path + ("?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else "")
    headers = [("Connection", "close")]
    headers += rng.sample([("Upgrade", "websocket"), ("Origin", "http://evil.example"),
                           ("Origin", "http://127.0.0.1"), ("Content-Type", "application/octet-stream"),
                           ("Content-Type", "text/plain"), ("Sec-WebSocket-Version", "13"),
                           ("Sec-WebSocket-Key", KEY), ("Access-Control-Request-Method", "POST")],
                          rng.randrange(0, 4))
    if ("Upgrade", "websocket") in headers and rng.random() < 0.7:
        headers[0] = ("Connection", "Upgrade")
        headers += [field for field in [("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", KEY)]
                    if field not in headers]
    body = rng.choice([b"", b"3", b"1", b"2", b"4hi\x1e4there", b"\xff\xfe", bytes(rng.randbytes(30)),
                       b"4" + b"y" * 5000])
    if method not in ("POST", "PUT", "PATCH") and rng.random() < 0.8:
        body = b""
    if body or method == "POST":
        headers.append(("Content-Length", str(len(body))))
    head = "".join(f"{k}: {v}\r\n" for k, v in [("Host", "127.0.0.1")] + headers)
    return method, f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body


async def status_of_answer(peer: Peer, server: EngineServer) -> int:
    """The status of the answer; a GET the server holds is released by sending its session
    a message (a held poll is not an answer yet, and waiting is not a failure)."""
    received = b""
    read = asyncio.ensure_future(peer.read())
    while True:
        await asyncio.wait({read}, timeout=0.02)
        if not read.done():
            for sid, session in list(server.sessions.items()):
                if session.poll_held:
                    await server.send(sid, "release")
            continue
        data = read.result()
        received += data
        if b"\r\n" in received or not data:
            assert received.startswith(b"HTTP/1.1 "), received
            return int(received.split(b" ", 2)[1])
        read = asyncio.ensure_future(peer.read())


@attack
async def test_three_hundred_seeded_random_requests_never_get_a_5xx():
    rng = random.Random(9)
    async with running("eio", ping_interval=60000, ping_timeout=60000) as (port, server):
        sids: list[str] = []
        statuses: dict[int, int] = {}
        for _ in range(300):
            if len(sids) < 3 or rng.random() < 0.1:
                peer = await Peer.open(port)
                sids.append(await polling_handshake(peer))
                peer.close()
            method, data = fuzz_request(rng, sids)
            peer = await Peer.open(port)
            peer.send(data)
            code = await status_of_answer(peer, server)
            peer.close()
            assert code < 500, (code, data[:200])
            statuses[code] = statuses.get(code, 0) + 1
        assert set(statuses) >= {101, 200, 400, 403, 405, 413}  # the fuzz reached the interesting answers
        await legit("eio", port)


# --- error answers that arrive: the server reads what the peer still sends (issue 9) -----------

EXPECTED_413 = b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


async def send_big_body_and_read_the_answer(port: int, head: bytes, chunks) -> bytes:
    """Send ``head`` then keep sending ``chunks`` while reading; return everything received
    until the server's EOF.  A reset (the server closed with our bytes unread) fails."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)

    async def keep_sending():
        try:
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
        except ConnectionError:
            pass  # the server may stop reading after its bounded linger: our answer is in

    sending = asyncio.ensure_future(keep_sending())
    received = b""
    async with asyncio.timeout(WAIT):
        while data := await reader.read(65536):  # ConnectionResetError here fails the test
            received += data
    await sending
    writer.close()
    return received


@pytest.mark.parametrize("chunked", [False, True])
@attack
async def test_a_peer_that_keeps_sending_gets_the_whole_413(chunked):
    async with running("eio", close_timeout=WAIT) as (port, server):
        peer = await Peer.open(port)
        sid = await polling_handshake(peer)
        peer.close()
        for _ in range(5):  # 5 of 5 runs
            if chunked:
                head = request("POST", eio_target(sid=sid), headers=[("Transfer-Encoding", "chunked")])
                chunks = [b"10000\r\n" + b"4" * 0x10000 + b"\r\n"] * 32
            else:
                head = request("POST", eio_target(sid=sid), headers=[("Content-Length", str(32 * 65536))])
                chunks = [b"4" * 65536] * 32
            assert await send_big_body_and_read_the_answer(port, head, chunks) == EXPECTED_413
        assert sid in server.sessions
        await legit("eio", port)
        await server.disconnect(sid)  # and collect the close packet: shutdown need not wait
        peer = await Peer.open(port)
        assert (await peer.request("GET", eio_target(sid=sid)))[1] == b"1"


@attack
async def test_a_content_length_over_max_payload_is_refused_before_the_body():
    async with running("eio", request_timeout=WAIT) as (port, server):
        peer = await Peer.open(port)
        sid = await polling_handshake(peer)
        # only the header block: the answer must not wait for a body it would refuse
        peer.send(request("POST", eio_target(sid=sid), headers=[("Content-Length", "1000000000")]))
        head, body = await peer.answer()
        assert head + body == EXPECTED_413
        assert sid in server.sessions
