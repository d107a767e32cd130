"""The asyncio Engine.IO client against servers the test scripts request by request.

:class:`ScriptedServer` is a raw asyncio server: every HTTP request it receives is handed to the
test (with its exact bytes and the TCP connection it came on), and the test decides the answer -
or holds it, like a long-poll, or accepts a WebSocket and speaks through the sans-I/O
:class:`~lablib.websocket.connection.Connection`.  That makes the wire visible: request bytes,
the order of the upgrade steps, a server that stops pinging.

Interop with python-engineio's server is in ``tests/interop/test_engineio_client.py``.
Timeouts are guards against hangs, never measurements.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from lablib.engineio import AsyncClient
from lablib.engineio import EngineClientState
from lablib.engineio.packets import OpenInfo
from lablib.errors import EngineIOError, HandshakeError
from lablib.http import NEED_DATA, HTTPConnection, Request, RequestParser, format_response
from lablib.websocket import accept_key
from lablib.websocket import (BinaryReceived, Connection, WebSocketClosed, Role,
                                         TextReceived)
from tests.aio_support import asyncio_test, until
from tests.wire import eio_recorder


# --- a server the test drives ------------------------------------------------------------------

class Exchange:
    """One request received by :class:`ScriptedServer`, waiting for the test's answer."""

    def __init__(self, conn_id: int, request: Request, raw: bytes, reader, writer, trailing: bytes):
        self.conn_id, self.request, self.raw = conn_id, request, raw
        self._reader, self._writer, self._trailing = reader, writer, trailing
        self.answered = asyncio.get_running_loop().create_future()

    @property
    def target(self) -> str:
        return self.request.target

    def respond(self, body: str | bytes = b"ok", status: int = 200,
                content_type: str = "text/plain; charset=UTF-8") -> None:
        body = body.encode() if isinstance(body, str) else body
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        self._writer.write(format_response(status, headers, body))
        self.answered.set_result("next")

    def drop(self) -> None:
        """Close the TCP connection instead of answering."""
        self._writer.close()
        self.answered.set_result("stop")

    def accept_websocket(self) -> "ScriptedWebSocket":
        key = self.request.headers["Sec-WebSocket-Key"]
        self._writer.write(format_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                 ("Sec-WebSocket-Accept", accept_key(key))]))
        self.answered.set_result("stop")
        return ScriptedWebSocket(self._reader, self._writer, self._trailing)


class ScriptedWebSocket:
    """The server's end of a WebSocket, on the sans-I/O Connection (no handshake: done above)."""

    def __init__(self, reader, writer, trailing: bytes):
        self.reader, self.writer = reader, writer
        self.connection = Connection(Role.SERVER)
        self.pending = list(self.connection.receive_data(trailing))
        self.closed = False

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            self.writer.write(self.connection.send_text(data))
        else:
            self.writer.write(self.connection.send_binary(data))

    async def recv(self) -> str | bytes | None:
        """The next message; None once the connection is closed."""
        while True:
            while self.pending:
                event = self.pending.pop(0)
                self.writer.write(self.connection.data_to_send())  # close echo, pongs
                if isinstance(event, (TextReceived, BinaryReceived)):
                    return event.data
                if isinstance(event, WebSocketClosed):
                    self.closed = True
                    self.writer.close()
                    return None
            data = await self.reader.read(65536)
            self.pending += self.connection.receive_eof() if not data else self.connection.receive_data(data)


class ScriptedServer:
    """Hands every request to the test through :meth:`next`; answers nothing by itself."""

    def __init__(self) -> None:
        self.exchanges: asyncio.Queue[Exchange] = asyncio.Queue()
        self.stash: list[Exchange] = []
        self.connections = 0
        self.closed_connections = 0
        self.port = 0

    async def __aenter__(self) -> "ScriptedServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def next(self, method: str | None = None, timeout: float = 5.0) -> Exchange:
        """The next request (with ``method``: the next one with that method; the others are
        kept for later calls - a GET and a POST may arrive in either order)."""
        for exchange in self.stash:
            if method is None or exchange.request.method == method:
                self.stash.remove(exchange)
                return exchange
        while True:
            exchange = await asyncio.wait_for(self.exchanges.get(), timeout)
            if method is None or exchange.request.method == method:
                return exchange
            self.stash.append(exchange)

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        conn_id = self.connections
        parser, raw = RequestParser(), b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                raw += data
                request = parser.receive_data(data)
                if request is NEED_DATA:
                    continue
                exchange = Exchange(conn_id, request, raw, reader, writer, parser.trailing_data)
                await self.exchanges.put(exchange)
                if "Upgrade" in request.headers:  # the WebSocket will read from here on
                    await exchange.answered
                    return
                # Wait for the test's answer, but notice a client that gives up meanwhile
                # (a held GET whose client closed the connection).
                eof = asyncio.ensure_future(reader.read(1))
                await asyncio.wait({exchange.answered, eof}, return_when=asyncio.FIRST_COMPLETED)
                if eof.done() and eof.result() == b"":
                    return
                eof.cancel()
                await asyncio.wait({eof})  # the next read() must not overlap this one
                early = b"" if eof.cancelled() else eof.result()
                if await exchange.answered == "stop":
                    return
                parser.start_next_cycle()
                raw = b""
                if early:  # (never seen: the client does not pipeline)
                    raise AssertionError(f"bytes before our answer: {early!r}")
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self.closed_connections += 1


def open_packet(sid: str = "S1", upgrades=("websocket",), interval: int = 60000,
                timeout: int = 60000) -> str:
    return "0" + OpenInfo(sid, tuple(upgrades), interval, timeout, 100000).to_json()


async def polling_client(server: ScriptedServer, sid: str = "S1", **options):
    """A polling-only client, connected; returns (client, events, the first held GET)."""
    client = AsyncClient(rng=random.Random(1), **options)
    events = eio_recorder(client)
    connecting = asyncio.create_task(client.connect(server.url, transports=["polling"]))
    (await server.next()).respond(open_packet(sid))
    await connecting
    get = await server.next()
    return client, events, get


async def disconnect_polling(client: AsyncClient, server: ScriptedServer) -> None:
    """``client.disconnect()`` over polling, with the server answering the "1" POST."""
    disconnecting = asyncio.create_task(client.disconnect())
    close = await server.next("POST")
    assert close.request.body == b"1"
    close.respond()
    await disconnecting


# --- HTTP/1.1 keep-alive -------------------------------------------------------------------------

@asyncio_test
async def test_keep_alive_reuses_one_connection_and_retries_a_stale_one():
    async with ScriptedServer() as server:
        http = HTTPConnection("127.0.0.1", server.port)
        task = asyncio.create_task(http.request("GET", "/a", [("Host", "x")]))
        first = await server.next()
        first.respond("one")
        assert (await task).body == b"one"
        task = asyncio.create_task(http.request("GET", "/b", [("Host", "x")]))
        second = await server.next()
        assert second.conn_id == first.conn_id and second.raw == b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        second.drop()  # the server closed the idle keep-alive connection: sent again, once
        third = await server.next()
        assert third.target == "/b" and third.conn_id != first.conn_id
        third.respond("two")
        assert (await task).body == b"two"
        assert (http.requests_sent, http.connections_opened) == (3, 2)
        http.close()


# --- polling -----------------------------------------------------------------------------------------

@asyncio_test
async def test_polling_request_bytes_and_deterministic_t():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        connecting = asyncio.create_task(client.connect(server.url, transports=["polling"]))
        handshake = await server.next()
        assert handshake.raw == (b"GET /engine.io/?EIO=4&transport=polling&t=84g7v.0 HTTP/1.1\r\n"
                                 b"Host: 127.0.0.1:%d\r\nAccept: */*\r\n\r\n" % server.port)
        handshake.respond(open_packet("S1"))
        await connecting
        assert (client.sid, client.transport, client.state) == ("S1", "polling", EngineClientState.OPEN)
        get = await server.next()
        assert get.target == "/engine.io/?EIO=4&transport=polling&sid=S1&t=84g7v.1"
        assert get.conn_id == handshake.conn_id  # the GET loop keeps its keep-alive connection
        await client.send("h\u00e9")
        post = await server.next("POST")
        assert post.conn_id != get.conn_id  # POSTs have a connection of their own
        assert post.raw == (b"POST /engine.io/?EIO=4&transport=polling&sid=S1&t=84g7v.2 HTTP/1.1\r\n"
                            b"Host: 127.0.0.1:%d\r\nAccept: */*\r\n"
                            b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 4\r\n\r\n"
                            b"4h\xc3\xa9" % server.port)
        post.respond()
        await disconnect_polling(client, server)
    # the same seed gives the same t= values: notebooks re-run byte-identical
    assert AsyncClient(rng=random.Random(1))._polling_target().endswith("&t=84g7v.0")


@asyncio_test
async def test_polling_messages_ping_and_server_close():
    async with ScriptedServer() as server:
        client, events, get = await polling_client(server)
        get.respond("4hi\x1ebAQID\x1e2")           # text, binary, ping in one payload
        pong = await server.next("POST")
        assert pong.request.body == b"3"
        pong.respond()
        await until(lambda: len(events) == 3)
        assert events == ["connect", "hi", b"\x01\x02\x03"]
        await client.send(b"\xff\x00")
        post = await server.next("POST")
        assert post.request.body == b"b/wA="
        post.respond()
        get = await server.next("GET")
        get.respond("4bye\x1e1")                   # the server closes
        await client.wait()
        assert events[-2:] == ["bye", ("disconnect", "transport close")]
        assert client.state is EngineClientState.CLOSED and client.disconnect_reason == "transport close"


@asyncio_test
async def test_packets_sent_while_a_post_is_in_flight_share_the_next_post():
    async with ScriptedServer() as server:
        client, events, get = await polling_client(server)
        await client.send("m0")
        first = await server.next("POST")
        for i in range(1, 5):
            await client.send(f"m{i}")
        first.respond()
        second = await server.next("POST")
        assert (first.request.body, second.request.body) == (b"4m0", b"4m1\x1e4m2\x1e4m3\x1e4m4")
        second.respond()
        await disconnect_polling(client, server)
        assert events == ["connect", ("disconnect", "forced close")]


@asyncio_test
async def test_client_disconnect_sends_close_and_drops_the_held_poll():
    async with ScriptedServer() as server:
        client, events, get = await polling_client(server)
        disconnecting = asyncio.create_task(client.disconnect())
        close = await server.next("POST")
        assert close.request.body == b"1"
        close.respond()
        await disconnecting
        await until(lambda: server.closed_connections == 2)  # the GET's and the POST's
        assert events == ["connect", ("disconnect", "forced close")]


@asyncio_test
async def test_dead_polling_server_is_noticed_after_interval_plus_timeout():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        connecting = asyncio.create_task(client.connect(server.url, transports=["polling"]))
        (await server.next()).respond(open_packet(interval=100, timeout=100))
        await connecting
        await server.next()                       # held for ever: no ping will come
        await client.wait()
        assert events == ["connect", ("disconnect", "ping timeout")]
        await until(lambda: server.closed_connections == 1)  # the held GET was given up


@asyncio_test
async def test_pings_keep_a_polling_session_alive():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        connecting = asyncio.create_task(client.connect(server.url, transports=["polling"]))
        (await server.next()).respond(open_packet(interval=100, timeout=100))
        await connecting
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.6               # three times interval + timeout
        while loop.time() < deadline:
            get = await server.next("GET")
            await asyncio.sleep(0.05)
            get.respond("2")
            pong = await server.next("POST")
            assert pong.request.body == b"3"
            pong.respond()
        assert client.state is EngineClientState.OPEN
        await disconnect_polling(client, server)


@pytest.mark.parametrize("answer", ["status", "tcp"])
@asyncio_test
async def test_a_failed_poll_is_a_transport_error(answer):
    async with ScriptedServer() as server:
        client, events, get = await polling_client(server)
        if answer == "status":
            get.respond('{"code":1,"message":"Session ID unknown"}', status=400)
        else:
            get.drop()  # a reused keep-alive connection that ends is retried once...
            (await server.next("GET")).drop()  # ...on a fresh one: that loss is an error
        await client.wait()
        assert events == ["connect", ("disconnect", "transport error")]


@asyncio_test
async def test_refused_and_malformed_handshakes_raise():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        connecting = asyncio.create_task(client.connect(server.url + "/?x", transports=["polling"]))
        (await server.next()).respond('{"code":5,"message":"Unsupported protocol version"}', status=400)
        with pytest.raises(EngineIOError) as refused:
            await connecting
        assert (refused.value.code, refused.value.status) == (5, 400)
        connecting = asyncio.create_task(client.connect(server.url, transports=["polling"]))
        (await server.next()).respond("4hello")
        with pytest.raises(HandshakeError, match="parse error"):
            await connecting
        assert events == []  # no connect, so no disconnect either


@asyncio_test
async def test_handlers_run_in_order_and_a_busy_handler_stops_the_polling():
    async with ScriptedServer() as server:
        release = asyncio.Event()
        received: list = []
        client = AsyncClient(rng=random.Random(1), max_queue=4)

        @client.on("message")
        async def message(data):
            received.append(data)
            await release.wait()

        connecting = asyncio.create_task(client.connect(server.url, transports=["polling"]))
        (await server.next()).respond(open_packet())
        await connecting
        (await server.next()).respond("\x1e".join(f"4m{i}" for i in range(10)))
        await until(lambda: received == ["m0"])
        with pytest.raises(asyncio.TimeoutError):  # 9 messages wait: no new GET meanwhile
            await server.next(timeout=0.2)
        release.set()
        (await server.next()).respond("4m10")
        await until(lambda: len(received) == 11)
        assert received == [f"m{i}" for i in range(11)]
        await disconnect_polling(client, server)


@asyncio_test
async def test_disconnect_from_a_handler_does_not_deadlock():
    async with ScriptedServer() as server:
        client, events, get = await polling_client(server)

        @client.on("message")
        async def message(data):
            events.append(data)
            await client.disconnect()

        get.respond("4quit")
        (await server.next("POST")).respond()  # the "1"
        await client.wait()
        assert events == ["connect", "quit", ("disconnect", "forced close")]


# --- the upgrade -----------------------------------------------------------------------------------

@asyncio_test
async def test_upgrade_waits_for_the_pending_poll_before_sending_5():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        connecting = asyncio.create_task(client.connect(server.url))
        (await server.next()).respond(open_packet("S1"))
        first = await server.next()
        second = await server.next()
        poll, upgrade = (first, second) if "transport=polling" in first.target else (second, first)
        assert upgrade.target == "/engine.io/?EIO=4&transport=websocket&sid=S1"
        assert upgrade.request.headers.get("Upgrade") == "websocket"
        ws = upgrade.accept_websocket()
        assert await ws.recv() == "2probe"
        ws.send("3probe")
        await until(lambda: client.state is EngineClientState.UPGRADING)
        await client.send("early")                 # buffered until the WebSocket takes over
        with pytest.raises(asyncio.TimeoutError):  # no "5" while our GET is pending
            await asyncio.wait_for(ws.recv(), 0.2)
        poll.respond("6")                          # the server releases the poll with a noop
        assert await ws.recv() == "5"
        assert await ws.recv() == "4early"
        await connecting
        assert (client.transport, client.state) == ("websocket", EngineClientState.UPGRADED)
        await until(lambda: server.closed_connections == 1)  # polling's connection is closed
        ws.send("2")
        assert await ws.recv() == "3"
        ws.send("4over ws")
        ws.send(b"\x00\x01")
        await client.send(b"\x02")
        assert await ws.recv() == b"\x02"
        ws.send("1")
        assert await ws.recv() is None             # the client closes the WebSocket
        await client.wait()
        assert events == ["connect", "over ws", b"\x00\x01", ("disconnect", "transport close")]


@asyncio_test
async def test_a_failed_probe_leaves_the_session_on_polling():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        connecting = asyncio.create_task(client.connect(server.url))
        (await server.next()).respond(open_packet("S1"))
        exchanges = [await server.next(), await server.next()]
        [upgrade] = [e for e in exchanges if "transport=websocket" in e.target]
        [poll] = [e for e in exchanges if e is not upgrade]
        ws = upgrade.accept_websocket()
        assert await ws.recv() == "2probe"
        ws.send("4not a probe answer")
        assert await ws.recv() is None             # the client closed the WebSocket
        await connecting
        assert (client.transport, client.state) == ("polling", EngineClientState.OPEN)
        await client.send("still polling")
        post = await server.next("POST")
        assert post.request.body == b"4still polling"
        post.respond()
        poll.respond("4fine")
        await until(lambda: "fine" in events)
        await disconnect_polling(client, server)


@asyncio_test
async def test_no_upgrade_when_the_server_offers_none():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        connecting = asyncio.create_task(client.connect(server.url))
        (await server.next()).respond(open_packet(upgrades=()))
        await connecting
        get = await server.next()
        assert "transport=polling" in get.target and client.transport == "polling"
        await disconnect_polling(client, server)


# --- websocket only -----------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["polling", "websocket"])
@asyncio_test
async def test_the_query_of_the_url_goes_with_every_request(transport):
    """engine.io-client sends the URL's own query first, then EIO, transport, sid and t; a
    parameter of the protocol's own in the URL is overridden, not sent twice."""
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        url = server.url + "/?token=a%20b&room=lobby&EIO=3"
        connecting = asyncio.create_task(client.connect(url, transports=[transport]))
        first = await server.next()
        if transport == "websocket":
            assert first.target == "/engine.io/?token=a%20b&room=lobby&EIO=4&transport=websocket"
            ws = first.accept_websocket()
            ws.send(open_packet("W1", upgrades=()))
            await connecting
            await client.disconnect()
            return
        assert first.target == "/engine.io/?token=a%20b&room=lobby&EIO=4&transport=polling&t=84g7v.0"
        first.respond(open_packet("S1", upgrades=()))
        await connecting
        get = await server.next()
        assert get.target == "/engine.io/?token=a%20b&room=lobby&EIO=4&transport=polling&sid=S1&t=84g7v.1"
        await disconnect_polling(client, server)


@asyncio_test
async def test_websocket_only_session():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        connecting = asyncio.create_task(client.connect(server.url, transports=["websocket"]))
        upgrade = await server.next()
        assert upgrade.target == "/engine.io/?EIO=4&transport=websocket"
        ws = upgrade.accept_websocket()
        ws.send(open_packet("W1", upgrades=()))
        await connecting
        assert (client.sid, client.transport, client.state) == ("W1", "websocket", EngineClientState.OPEN)
        ws.send("2")
        assert await ws.recv() == "3"
        await client.send("text")
        await client.send(b"\x00")
        assert [await ws.recv(), await ws.recv()] == ["4text", b"\x00"]
        disconnecting = asyncio.create_task(client.disconnect())
        assert await ws.recv() == "1"
        assert await ws.recv() is None             # then the closing handshake
        await disconnecting
        assert events == ["connect", ("disconnect", "forced close")]


@asyncio_test
async def test_dead_websocket_server_is_noticed_after_interval_plus_timeout():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1), close_timeout=0.2)
        events = eio_recorder(client)
        connecting = asyncio.create_task(client.connect(server.url, transports=["websocket"]))
        ws = (await server.next()).accept_websocket()
        ws.send(open_packet(upgrades=(), interval=100, timeout=100))
        await connecting
        await client.wait()                        # no ping ever comes
        assert events == ["connect", ("disconnect", "ping timeout")]


@asyncio_test
async def test_websocket_lost_is_a_transport_close():
    async with ScriptedServer() as server:
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        connecting = asyncio.create_task(client.connect(server.url, transports=["websocket"]))
        ws = (await server.next()).accept_websocket()
        ws.send(open_packet(upgrades=()))
        await connecting
        ws.writer.close()                          # TCP gone, no close frame
        await client.wait()
        assert events == ["connect", ("disconnect", "transport close")]



# --- lablib client <-> lablib server --------------------------------------------------------------

LABLIB_MODES = {"polling": (["polling"], "polling"), "websocket": (["websocket"], "websocket"),
                "upgrade": (["polling", "websocket"], "websocket")}


@pytest.mark.parametrize("mode", LABLIB_MODES)
@asyncio_test
async def test_lablib_client_with_lablib_server(mode):
    from lablib.engineio.server import Server, serve

    transports, final = LABLIB_MODES[mode]
    # pingTimeout leaves room for a loaded machine: the pong deadline counts from the ping's
    # scheduled time (issue 9), so a late event loop eats into it
    server = Server(ping_interval=100, ping_timeout=1000, rng=random.Random(2))
    log: list = []
    server.on("connect", lambda sid, request: log.append("connect"))
    server.on("disconnect", lambda sid, reason: log.append(("disconnect", reason)))

    @server.on("message")
    async def echo(sid, data):
        log.append(data)
        await server.send(sid, data)

    async with serve(server, "127.0.0.1", 0):
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        await client.connect(f"http://127.0.0.1:{server.port}", transports=transports)
        assert client.transport == final and client.sid in server.sessions
        await client.send("h\u00e9")
        await client.send(b"\x00\xff")
        await until(lambda: len(events) == 3)
        for i in range(20):
            await server.send(client.sid, f"m{i}")
        await until(lambda: len(events) == 23)
        await asyncio.sleep(0.5)                   # several pingIntervals: pings answered
        assert client.state in (EngineClientState.OPEN, EngineClientState.UPGRADED)
        await client.disconnect()
        await until(lambda: log[-1] == ("disconnect", "transport close"))
        assert events == ["connect", "h\u00e9", b"\x00\xff"] + [f"m{i}" for i in range(20)] + [
            ("disconnect", "forced close")]
        assert log[:3] == ["connect", "h\u00e9", b"\x00\xff"]
        # and a session the server closes
        client = AsyncClient(rng=random.Random(3))
        events = eio_recorder(client)
        await client.connect(f"http://127.0.0.1:{server.port}", transports=transports)
        await client.send("ready")                 # its echo: the server has seen the "5" too
        await until(lambda: "ready" in events)
        await server.disconnect(client.sid)
        await client.wait()
        assert events == ["connect", "ready", ("disconnect", "transport close")]
