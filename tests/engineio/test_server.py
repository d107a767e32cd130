"""The asyncio Engine.IO server over real sockets on 127.0.0.1.

The client side is made by hand - raw HTTP/1.1 requests, a sans-I/O WebSocket client - so each
test can assert the exact status line, header fields and body, or the exact frame bytes.
Each scenario is an ``async def`` run in a fresh event loop under a guard timeout (the project
does not use pytest-asyncio); heartbeats use 100-300 ms intervals, and no assertion is about
how long something took.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random

import pytest

from lablib.engineio.server import Server, serve
from lablib.engineio.server_core import generate_sid
from lablib.engineio import EngineState, Transport
from lablib.errors import LocalProtocolError
from lablib.websocket import WebSocketClosed
from lablib.websocket.handshake import ClientHandshake
from tests.aio_support import asyncio_test, until
from tests.wire import Peer, RawWebSocket, eio_target, polling_handshake, status

SEED = 7
SID = generate_sid(random.Random(SEED))  #: the first sid of a server built with rng=Random(7)


class Recorder:
    """A server whose handlers record ``(event, sid, value)`` in order."""

    def __init__(self, **settings) -> None:
        settings.setdefault("rng", random.Random(SEED))
        settings.setdefault("close_timeout", 0.3)
        self.server = Server(**settings)
        self.events: list[tuple] = []
        self.server.on("connect", lambda sid, request: self.events.append(("connect", sid, request.path)))
        self.server.on("message", lambda sid, data: self.events.append(("message", sid, data)))
        self.server.on("disconnect", lambda sid, reason: self.events.append(("disconnect", sid, reason)))


def q(sid: str | None = None, transport: str = "polling", eio: str = "4", prefix: str = "/engine.io/") -> str:
    return eio_target(prefix, transport, sid, eio)


def open_json(sid: str, ping_interval=25000, ping_timeout=20000, max_payload=1000000,
              upgrades='["websocket"]') -> bytes:
    return (f'0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{ping_interval},'
            f'"pingTimeout":{ping_timeout},"maxPayload":{max_payload}}}').encode()


# === (a) polling, request by request =============================================================

@asyncio_test
async def test_handshake_answers_the_open_packet():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        head, body = await http.request("GET", q() + "&t=N8hyd6w")
        assert head == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                        b"Content-Length: 118\r\n\r\n")
        assert body == open_json(SID)
        assert rec.events == [("connect", SID, "/engine.io/")]
        assert srv.sessions[SID].state is EngineState.OPEN
        http.close()


@asyncio_test
async def test_a_held_get_is_released_by_send():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        http.send_request("GET", q(sid))  # same keep-alive connection
        await until(lambda: srv.sessions[sid].poll_held)
        await srv.send(sid, "hello")
        head, body = await http.answer()
        assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 6\r\n\r\n"
        assert body == b"4hello"
        http.close()


@asyncio_test
async def test_packets_sent_between_polls_wait_for_the_next_get():
    async with serve(Recorder().server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        await srv.send(sid, "one")
        await srv.send(sid, b"\x01\x02\x03\x04")  # binary: "b" + base64 in a polling payload
        await srv.send(sid, "three")
        _, body = await http.request("GET", q(sid))
        assert body == b"4one\x1ebAQIDBA==\x1e4three"
        http.close()


@asyncio_test
async def test_post_of_a_batched_payload_gives_message_events_in_order():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        head, body = await http.request("POST", q(sid), b"4hello\x1ebAQIDBA==\x1e4\xc3\xa9t\xc3\xa9",
                                        [("Content-Type", "text/plain;charset=UTF-8")])
        assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\n"
        assert body == b"ok"
        # the handlers ran before the answer was written
        assert rec.events[1:] == [("message", sid, "hello"), ("message", sid, b"\x01\x02\x03\x04"),
                                  ("message", sid, "été")]
        http.close()


@asyncio_test
async def test_unknown_sid_bad_eio_bad_transport():
    async with serve(Recorder().server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        cases = [(q("nope"), b'{"code":1,"message":"Session ID unknown"}'),
                 (q(eio="3"), b'{"code":5,"message":"Unsupported protocol version"}'),
                 (q(transport="carrier-pigeon"), b'{"code":0,"message":"Transport unknown"}')]
        for target, expected in cases:
            head, body = await http.request("GET", target)
            assert head == (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(expected))
            assert body == expected
        head, body = await http.request("POST", q(), b"4x")  # a handshake must be a GET
        assert body == b'{"code":2,"message":"Bad handshake method"}'
        head, body = await http.request("GET", "/elsewhere/")
        assert status(head) == b"HTTP/1.1 404 Not Found"
        # every refusal kept the connection: one more handshake on it works
        assert await polling_handshake(http)
        http.close()


@asyncio_test
async def test_post_over_max_payload_is_413_and_the_session_lives_on():
    rec = Recorder(max_payload=100)
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        head, body = await http.request("POST", q(sid), b"4" + b"x" * 200)
        assert head == b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        assert body == b"" and await http.closed_by_server()
        assert srv.sessions[sid].state is EngineState.OPEN
        other = await Peer.open(srv.port)
        head, body = await other.request("POST", q(sid), b"4" + b"x" * 99)  # exactly maxPayload
        assert body == b"ok" and rec.events[-1] == ("message", sid, "x" * 99)
        other.close()


@asyncio_test
async def test_bad_payload_closes_the_session_with_400_code_3():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        head, body = await http.request("POST", q(sid), b"9what")
        assert status(head) == b"HTTP/1.1 400 Bad Request"
        assert body == b'{"code":3,"message":"Bad request"}'
        assert rec.events[-1] == ("disconnect", sid, "parse error")
        assert sid not in srv.sessions
        http.close()


@asyncio_test
async def test_a_second_concurrent_get_is_400_and_ends_the_session():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        first, second = await Peer.open(srv.port), await Peer.open(srv.port)
        sid = await polling_handshake(first)
        first.send_request("GET", q(sid))
        await until(lambda: srv.sessions[sid].poll_held)
        head, body = await second.request("GET", q(sid))
        # the spec's 400 and the error JSON (the reference answers 500, empty)
        assert head == (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 34\r\n\r\n")
        assert body == b'{"code":3,"message":"Bad request"}'
        _, body = await first.answer()
        assert body == b"1"  # the held GET gets the close packet
        assert rec.events[-1] == ("disconnect", sid, "transport error")
        first.close(), second.close()


@asyncio_test
async def test_a_post_while_the_previous_one_is_handled_is_400_and_ends_the_session():
    """Handlers of one session run in order; a client posts again only once answered.  A
    second POST meanwhile is refused as by the reference (polling.ts, "data request overlap
    from client")."""
    server = Server()
    handled, release = [], asyncio.Event()
    closed = asyncio.get_running_loop().create_future()

    @server.on("message")
    async def message(sid, data):
        handled.append(data)
        await release.wait()

    server.on("disconnect", lambda sid, reason: closed.set_result(reason))
    async with serve(server, "127.0.0.1", 0) as srv:
        first, second = await Peer.open(srv.port), await Peer.open(srv.port)
        sid = await polling_handshake(first)
        first.send_request("POST", q(sid), b"4first")
        await until(lambda: handled)
        head, body = await second.request("POST", q(sid), b"4second")
        assert status(head) == b"HTTP/1.1 400 Bad Request"
        assert body == b'{"code":3,"message":"Bad request"}'
        assert await closed == "transport error"
        release.set()
        head, body = await first.answer()
        assert (status(head), body) == (b"HTTP/1.1 200 OK", b"ok")
        assert handled == ["first"]
        first.close(), second.close()


@asyncio_test
async def test_text_with_the_record_separator_is_refused_over_polling_and_nothing_is_lost():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        http.send_request("GET", q(sid))
        await until(lambda: srv.sessions[sid].poll_held)
        with pytest.raises(LocalProtocolError, match="record separator"):
            await rec.server.send(sid, "a\x1eb")
        await rec.server.send(sid, "after")
        head, body = await http.answer()  # the held GET is answered, not left hanging
        assert (status(head), body) == (b"HTTP/1.1 200 OK", b"4after")
        http.close()


@asyncio_test
async def test_cors_preflight_and_a_refused_origin():
    rec = Recorder(cors_allowed_origins=["https://lab.example"])
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        head, body = await http.request("OPTIONS", q(), headers=[
            ("Origin", "https://lab.example"), ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type")])
        assert head == (b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: https://lab.example\r\n"
                        b"Vary: Origin\r\nAccess-Control-Allow-Credentials: true\r\n"
                        b"Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                        b"Access-Control-Allow-Headers: content-type\r\n\r\n")
        head, body = await http.request("GET", q(), headers=[("Origin", "https://lab.example")])
        assert b"\r\nAccess-Control-Allow-Origin: https://lab.example\r\n" in head
        assert body.startswith(b'0{"sid":')
        head, body = await http.request("GET", q(), headers=[("Origin", "https://evil.example")])
        assert status(head) == b"HTTP/1.1 403 Forbidden"
        assert body == b'{"code":4,"message":"Forbidden"}'
        http.close()


@asyncio_test
async def test_connect_handler_can_refuse():
    server = Server(rng=random.Random(SEED), close_timeout=0.3)
    disconnects = []
    server.on("connect", lambda sid, request: "token=ok" in request.query)
    server.on("disconnect", lambda sid, reason: disconnects.append(sid))
    async with serve(server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        head, body = await http.request("GET", q())
        assert status(head) == b"HTTP/1.1 403 Forbidden"
        assert body == b'{"code":4,"message":"Forbidden"}'
        assert srv.sessions == {}
        head, body = await http.request("GET", q() + "&token=ok")
        assert status(head) == b"HTTP/1.1 200 OK"
        assert disconnects == []  # a refused session never connected, so it never disconnects
        http.close()


@asyncio_test
async def test_a_client_that_drops_its_held_get_ends_the_session():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        http.send_request("GET", q(sid))
        await until(lambda: srv.sessions[sid].poll_held)
        http.close()
        await until(lambda: sid not in srv.sessions)
        assert rec.events[-1] == ("disconnect", sid, "transport error")


@asyncio_test
async def test_client_close_packet_releases_the_held_get_with_a_noop():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        poll, post = await Peer.open(srv.port), await Peer.open(srv.port)
        sid = await polling_handshake(poll)
        poll.send_request("GET", q(sid))
        await until(lambda: srv.sessions[sid].poll_held)
        assert (await post.request("POST", q(sid), b"1"))[1] == b"ok"
        assert (await poll.answer())[1] == b"6"
        assert rec.events[-1] == ("disconnect", sid, "transport close")
        poll.close(), post.close()


@asyncio_test
async def test_server_disconnect_over_polling():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        await srv.send(sid, "bye")
        await srv.disconnect(sid)  # no GET held: the close packet waits for one
        assert srv.sessions[sid].state is EngineState.CLOSING
        _, body = await http.request("GET", q(sid))
        assert body == b"4bye\x1e1"
        assert rec.events[-1] == ("disconnect", sid, "forced close")
        assert (await http.request("GET", q(sid)))[1] == b'{"code":1,"message":"Session ID unknown"}'
        http.close()


@asyncio_test
async def test_socketio_style_path_prefix():
    rec = Recorder(path="/socket.io/")
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        head, body = await http.request("GET", q(prefix="/socket.io/"))
        assert body == open_json(SID)
        head, _ = await http.request("GET", q())
        assert status(head) == b"HTTP/1.1 404 Not Found"
        http.close()


@asyncio_test
async def test_malformed_http_gets_400_and_no_traceback():
    async with serve(Recorder().server, "127.0.0.1", 0) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /engine.io/ HTTP/1.1\r\nHost x\r\n\r\n")
        answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"Traceback" not in answer and b"bytearray" not in answer
        writer.close()
        # and a request head over the limit
        server2 = Server(max_request_size=1024, close_timeout=0.3)
        async with serve(server2, "127.0.0.1", 0) as srv2:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv2.port)
            writer.write(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nX: " + b"a" * 4000)
            assert (await reader.read()).startswith(b"HTTP/1.1 431 ")
            writer.close()


@asyncio_test
async def test_a_failing_handler_is_logged_and_the_server_goes_on(caplog):
    server = Server(rng=random.Random(SEED), close_timeout=0.3)
    server.on("message", lambda sid, data: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="lablib.engineio.server"):
        async with serve(server, "127.0.0.1", 0) as srv:
            http = await Peer.open(srv.port)
            sid = await polling_handshake(http)
            assert (await http.request("POST", q(sid), b"4boom"))[1] == b"ok"
            assert (await http.request("POST", q(sid), b"4again"))[1] == b"ok"
            http.close()
    assert [r.message for r in caplog.records] == ["the 'message' handler failed"] * 2


@asyncio_test
async def test_send_to_an_unknown_sid_is_ignored():
    async with serve(Recorder().server, "127.0.0.1", 0) as srv:
        await srv.send("nobody", "hello")  # logged, not raised (as python-engineio)


# === (b) WebSocket: direct, and the upgrade by hand ==============================================

@asyncio_test
async def test_upgrade_by_hand():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        poll = await Peer.open(srv.port)
        sid = await polling_handshake(poll)
        poll.send_request("GET", q(sid))
        await until(lambda: srv.sessions[sid].poll_held)

        ws = await RawWebSocket.open(srv.port, q(sid, "websocket"))
        assert srv.sessions[sid].state is EngineState.PROBING
        ws.send_text("2probe")
        assert await ws.raw(8) == b"\x81\x063probe"
        assert (await poll.answer())[1] == b"6"  # the held GET is released with a noop
        assert srv.sessions[sid].state is EngineState.UPGRADING
        await srv.send(sid, "buffered")  # during the upgrade: kept for the WebSocket
        _, body = await poll.request("GET", q(sid))
        assert body == b"6"  # polling is paused: a GET gets a noop at once

        ws.send_text("5")
        assert await ws.raw(11) == b"\x81\x094buffered"
        assert srv.sessions[sid].transport is Transport.WEBSOCKET
        await srv.send(sid, "hi")
        await srv.send(sid, b"\x00\xff")
        assert await ws.raw(5) == b"\x81\x034hi"
        assert await ws.raw(4) == b"\x82\x02\x00\xff"  # binary message: raw bytes, no "b"

        ws.send_text("4up")
        ws.send_binary(b"\x01\x02")
        await until(lambda: len(rec.events) >= 3)
        assert rec.events[1:] == [("message", sid, "up"), ("message", sid, b"\x01\x02")]

        head, body = await poll.request("GET", q(sid))  # polling refused after the upgrade
        assert status(head) == b"HTTP/1.1 400 Bad Request"
        assert body == b'{"code":3,"message":"Bad request"}'

        ws.peer.send(ws.conn.send_close(1000))
        closed = await ws.message()
        assert isinstance(closed, WebSocketClosed) and closed.code == 1000
        await until(lambda: rec.events[-1][0] == "disconnect")
        assert rec.events[-1] == ("disconnect", sid, "transport close")
        poll.close()


@asyncio_test
async def test_a_failed_probe_leaves_the_session_on_polling():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        poll = await Peer.open(srv.port)
        sid = await polling_handshake(poll)
        ws = await RawWebSocket.open(srv.port, q(sid, "websocket"))
        ws.send_text("5")  # no probe first
        closed = await ws.message()
        assert isinstance(closed, WebSocketClosed) and closed.code == 1000
        assert srv.sessions[sid].state is EngineState.OPEN
        await srv.send(sid, "still polling")
        assert (await poll.request("GET", q(sid)))[1] == b"4still polling"
        poll.close()


@asyncio_test
async def test_direct_websocket_session():
    rec = Recorder(ping_interval=100, ping_timeout=2000)
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        ws = await RawWebSocket.open(srv.port, q(transport="websocket"))
        assert await ws.message() == open_json(SID, 100, 2000, upgrades="[]").decode()
        assert rec.events == [("connect", SID, "/engine.io/")]
        for _ in range(3):  # the heartbeat, answered: the session stays
            assert await ws.message() == "2"
            ws.send_text("3")
        ws.send_text("4text")
        ws.send_binary(b"\xfe")
        await srv.send(SID, "x" * 200)  # a 16-bit payload length
        assert await ws.raw(4) == b"\x81\x7e\x00\xc9"
        assert await ws.raw(201) == b"4" + b"x" * 200
        await until(lambda: len(rec.events) == 3)
        assert rec.events[1:] == [("message", SID, "text"), ("message", SID, b"\xfe")]
        # polling with a WebSocket session's sid: refused
        http = await Peer.open(srv.port)
        assert (await http.request("GET", q(SID)))[1] == b'{"code":3,"message":"Bad request"}'
        await srv.disconnect(SID)  # no close packet over a WebSocket (reference), close 1000
        closed = await ws.message()
        assert isinstance(closed, WebSocketClosed) and closed.code == 1000
        assert rec.events[-1] == ("disconnect", SID, "forced close")
        http.close()


@asyncio_test
async def test_a_bad_websocket_handshake_is_refused_and_forgotten():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        head, body = await http.request("GET", q(transport="websocket"), headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")])
        assert status(head) == b"HTTP/1.1 400 Bad Request"
        assert body == b"Sec-WebSocket-Key must be the base64 encoding of 16 bytes\n"
        assert srv.sessions == {} and rec.events == []
        http.close()


@asyncio_test
async def test_oversized_websocket_message_closes_with_1009():
    rec = Recorder(max_payload=100)
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        ws = await RawWebSocket.open(srv.port, q(transport="websocket"))
        await ws.message()  # open packet
        ws.send_text("4" + "x" * 200)
        closed = await ws.message()
        assert isinstance(closed, WebSocketClosed) and closed.code == 1009
        await until(lambda: rec.events[-1][0] == "disconnect")
        assert rec.events[-1] == ("disconnect", SID, "transport close")


# === (c) the heartbeat ==============================================================================

@asyncio_test
async def test_a_polling_client_that_never_pongs_is_dropped():
    rec = Recorder(ping_interval=100, ping_timeout=100)
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        loop = asyncio.get_running_loop()
        before_handshake = loop.time()
        sid = await polling_handshake(http)
        assert (await http.request("GET", q(sid)))[1] == b"2"
        http.send_request("GET", q(sid))  # poll again, never POST the pong
        assert (await http.answer())[1] == b"1"  # the held GET gets the close packet
        # not before pingInterval + pingTimeout (counted from the ping's scheduled time)
        assert loop.time() - before_handshake >= 0.2
        assert rec.events[-1] == ("disconnect", sid, "ping timeout")
        http.close()


@asyncio_test
async def test_a_polling_client_that_pongs_stays():
    # a generous pingTimeout: the deadline counts from the scheduled ping, a loaded loop is late
    rec = Recorder(ping_interval=100, ping_timeout=1000)
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        poll, post = await Peer.open(srv.port), await Peer.open(srv.port)
        sid = await polling_handshake(poll)
        for _ in range(4):
            assert (await poll.request("GET", q(sid)))[1] == b"2"
            assert (await post.request("POST", q(sid), b"3"))[1] == b"ok"
        assert [e[0] for e in rec.events] == ["connect"]
        poll.close(), post.close()


@asyncio_test
async def test_a_websocket_client_that_never_pongs_is_dropped():
    rec = Recorder(ping_interval=100, ping_timeout=100)
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        ws = await RawWebSocket.open(srv.port, q(transport="websocket"))
        await ws.message()
        assert await ws.message() == "2"
        closed = await ws.message()
        assert isinstance(closed, WebSocketClosed) and closed.code == 1000
        assert rec.events[-1] == ("disconnect", SID, "ping timeout")


# === shutdown =========================================================================================

@asyncio_test
async def test_shutdown_answers_held_polls_and_closes_websockets_with_1001():
    rec = Recorder()
    srv = await serve(rec.server, "127.0.0.1", 0)
    poll = await Peer.open(srv.port)
    sid = await polling_handshake(poll)
    poll.send_request("GET", q(sid))
    await until(lambda: srv.sessions[sid].poll_held)
    idle = await Peer.open(srv.port)  # a keep-alive connection with no request
    ws = await RawWebSocket.open(srv.port, q(transport="websocket"))
    await ws.message()
    ws_sid = next(s for s in srv.sessions if s != sid)

    closing = asyncio.create_task(srv.close())
    assert (await poll.answer())[1] == b"1"
    closed = await ws.message()
    assert isinstance(closed, WebSocketClosed) and closed.code == 1001
    await closing
    assert await idle.closed_by_server() and await poll.closed_by_server()
    assert sorted(e[1:] for e in rec.events if e[0] == "disconnect") == sorted(
        [(sid, "forced close"), (ws_sid, "forced close")])
    assert srv.sessions == {}


# === (d) a second WebSocket for a session that has one (issue 9) ================================

async def _second_websocket_is_accepted_then_closed(srv, sid: str) -> None:
    """101, then a close frame without a status code (what the reference's ``websocket.close()``
    sends: ``\\x88\\x00``), then the TCP connection ends once the close is echoed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    handshake = ClientHandshake(f"127.0.0.1:{srv.port}", q(sid, "websocket"), rng=random.Random(2))
    writer.write(handshake.request_bytes())
    head = await reader.readuntil(b"\r\n\r\n")
    assert status(head) == b"HTTP/1.1 101 Switching Protocols"
    assert await reader.readexactly(2) == b"\x88\x00"
    writer.write(b"\x88\x80\x00\x00\x00\x00")  # the client's echo: a masked, empty close frame
    assert await reader.read() == b""  # the server ends the TCP connection
    writer.close()


@asyncio_test
async def test_a_second_websocket_for_an_upgraded_session_is_accepted_then_closed():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        poll = await Peer.open(srv.port)
        sid = await polling_handshake(poll)
        first = await RawWebSocket.open(srv.port, q(sid, "websocket"))
        first.send_text("2probe")
        assert await first.raw(8) == b"\x81\x063probe"
        first.send_text("5")
        await until(lambda: srv.sessions[sid].state is EngineState.UPGRADED)

        await _second_websocket_is_accepted_then_closed(srv, sid)

        # the session and its first WebSocket carry on untouched
        assert srv.sessions[sid].state is EngineState.UPGRADED
        await srv.send(sid, "still here")
        assert await first.raw(13) == b"\x81\x0b4still here"
        first.send_text("4and me")
        await until(lambda: rec.events[-1] == ("message", sid, "and me"))
        assert [e[0] for e in rec.events] == ["connect", "message"]
        poll.close()


@asyncio_test
async def test_a_second_websocket_while_probing_is_accepted_then_closed():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        poll = await Peer.open(srv.port)
        sid = await polling_handshake(poll)
        first = await RawWebSocket.open(srv.port, q(sid, "websocket"))
        assert srv.sessions[sid].state is EngineState.PROBING

        await _second_websocket_is_accepted_then_closed(srv, sid)

        assert srv.sessions[sid].state is EngineState.PROBING  # the first probe goes on
        first.send_text("2probe")
        assert await first.raw(8) == b"\x81\x063probe"
        first.send_text("5")
        await until(lambda: srv.sessions[sid].state is EngineState.UPGRADED)
        await srv.send(sid, "upgraded")
        assert await first.raw(11) == b"\x81\x094upgraded"
        poll.close()


# === (e) no 5xx: methods a session does not take (issue 9) =======================================

@asyncio_test
async def test_head_and_options_on_a_live_session_get_405_and_the_connection_goes_on():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        sid = await polling_handshake(http)
        body = b'{"code":3,"message":"Method Not Allowed"}'
        # a HEAD answer has the GET's header fields and no body (RFC 9110 §9.3.2)
        http.send_request("HEAD", f"/engine.io/?sid={sid}&transport=polling&EIO=4")
        head = await http.reader.readuntil(b"\r\n\r\n")
        assert head == (b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 41\r\nAllow: GET, POST\r\n\r\n")
        head, answer = await http.request("OPTIONS", f"/engine.io/?sid={sid}&transport=polling&EIO=%00")
        assert (status(head), answer) == (b"HTTP/1.1 405 Method Not Allowed", body)
        # the same keep-alive connection: the next answer is not confused with a HEAD body
        await srv.send(sid, "still there")
        assert (await http.request("GET", q(sid)))[1] == b"4still there"
        http.close()


# === (f) cross-site WebSocket hijacking: same-origin by default (issue 9) ==========================

@asyncio_test
async def test_a_websocket_from_another_site_is_refused_by_default():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        upgrade = ClientHandshake(f"127.0.0.1:{srv.port}", q(transport="websocket"),
                                  origin="http://evil.example", rng=random.Random(1))
        writer.write(upgrade.request_bytes())
        assert await reader.read() == (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                                       b"Content-Length: 32\r\nConnection: close\r\n\r\n"
                                       b'{"code":4,"message":"Forbidden"}')
        assert srv.sessions == {} and rec.events == []
        writer.close()
        # the page's own origin is accepted
        same = ClientHandshake(f"127.0.0.1:{srv.port}", q(transport="websocket"),
                               origin=f"http://127.0.0.1:{srv.port}", rng=random.Random(1))
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(same.request_bytes())
        head = await reader.readuntil(b"\r\n\r\n")
        assert status(head) == b"HTTP/1.1 101 Switching Protocols"
        writer.close()


# === (g) the server's surface: transport(sid), request(sid), routes, static files, two paths ======

@asyncio_test
async def test_transport_and_handshake_request_of_each_session():
    rec = Recorder()
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        poll = await Peer.open(srv.port)
        head, body = await poll.request("GET", q() + "&token=abc", headers=[("X-Lab", "01")])
        sid = json.loads(body[1:])["sid"]
        assert srv.transport(sid) == "polling"
        request = srv.request(sid)
        assert request.method == "GET" and request.path == "/engine.io/"
        assert "token=abc" in request.query and request.headers["X-Lab"] == "01"
        ws = await RawWebSocket.open(srv.port, q(sid, "websocket"))
        assert srv.transport(sid) == "polling"  # probing: still polling
        ws.send_text("2probe")
        assert await ws.raw(8) == b"\x81\x063probe"
        ws.send_text("5")
        await until(lambda: srv.transport(sid) == "websocket")
        assert srv.request(sid) is request  # the handshake request, not the upgrade's
        with pytest.raises(KeyError):
            srv.transport("unknown")
        with pytest.raises(KeyError):
            srv.request("unknown")
        poll.close()


@asyncio_test
async def test_routes_and_a_static_directory_next_to_engineio(tmp_path):
    from lablib.http import Headers, Response
    (tmp_path / "index.html").write_bytes(b"<!doctype html><title>lab</title>")
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_bytes(b"console.log(1)")
    (tmp_path.parent / "secret.txt").write_bytes(b"secret")

    async def health(request):
        return Response(200, Headers([("Content-Type", "text/plain")]), body=b"ok " + request.method.encode())

    rec = Recorder(routes={"/health": health, "/sync": lambda request: Response(204, Headers())},
                   static_dir=tmp_path)
    async with serve(rec.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)  # one keep-alive connection for everything
        head, body = await http.request("GET", "/health")
        assert head == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n")
        assert body == b"ok GET"
        head, body = await http.request("GET", "/sync")
        assert status(head) == b"HTTP/1.1 204 No Content" and body == b""
        head, body = await http.request("GET", "/")
        assert (status(head), body) == (b"HTTP/1.1 200 OK", b"<!doctype html><title>lab</title>")
        assert b"\r\nContent-Type: text/html" in head
        head, body = await http.request("GET", "/js/app.js?v=1")
        assert (status(head), body) == (b"HTTP/1.1 200 OK", b"console.log(1)")
        assert b"javascript" in head
        for outside in ("/../secret.txt", "/js/../../secret.txt", "/%2e%2e/secret.txt", "/missing.html", "/js"):
            head, _ = await http.request("GET", outside)
            assert status(head) == b"HTTP/1.1 404 Not Found", outside
        head, _ = await http.request("POST", "/index.html", b"x")
        assert status(head) == b"HTTP/1.1 405 Method Not Allowed"
        sid = await polling_handshake(http)  # Engine.IO on the same port, the same connection
        assert srv.transport(sid) == "polling"
        http.close()


@asyncio_test
async def test_two_engineio_endpoints_on_one_port():
    first, second = Recorder(path="/a/"), Recorder(path="/b/", rng=random.Random(8))
    first.server.mount(second.server)
    async with serve(first.server, "127.0.0.1", 0) as srv:
        http = await Peer.open(srv.port)
        _, body_a = await http.request("GET", q(prefix="/a/"))
        _, body_b = await http.request("GET", q(prefix="/b/"))
        sid_a, sid_b = json.loads(body_a[1:])["sid"], json.loads(body_b[1:])["sid"]
        assert sid_a in first.server.sessions and sid_b in second.server.sessions
        await http.request("POST", q(sid_b, prefix="/b/"), b"4to b")
        await http.request("POST", q(sid_a, prefix="/a/"), b"4to a")
        assert first.events[-1] == ("message", sid_a, "to a")
        assert second.events[-1] == ("message", sid_b, "to b")
        # a sid of one endpoint means nothing to the other
        head, _ = await http.request("GET", q(sid_a, prefix="/b/"))
        assert status(head) == b"HTTP/1.1 400 Bad Request"
        # the second endpoint's heartbeat and sends work: its timers run too
        await second.server.send(sid_b, "from b")
        assert (await http.request("GET", q(sid_b, prefix="/b/")))[1] == b"4from b"
        http.close()
    assert second.events[-1][0] == "disconnect" and first.events[-1][0] == "disconnect"


def test_serve_takes_explicit_keyword_settings():
    import inspect
    parameters = inspect.signature(serve).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    server_parameters = inspect.signature(Server).parameters
    for name, parameter in server_parameters.items():
        assert name in parameters, name
        assert parameters[name].default == parameter.default and parameters[name].annotation == parameter.annotation
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY


@asyncio_test
async def test_serve_builds_a_server_from_handlers_and_settings():
    seen = []
    async with serve({"message": lambda sid, data: seen.append(data)}, "127.0.0.1", 0,
                     ping_interval=300, rng=random.Random(SEED)) as srv:
        http = await Peer.open(srv.port)
        _, body = await http.request("GET", q())
        assert body == open_json(SID, ping_interval=300)
        await http.request("POST", q(SID), b"4hi")
        assert seen == ["hi"]
        http.close()
    with pytest.raises(TypeError):
        serve(Server(), "127.0.0.1", 0, ping_interval=300)
