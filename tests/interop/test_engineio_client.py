"""lablib's Engine.IO client against python-engineio's AsyncServer (aiohttp) on 127.0.0.1.

Every scenario runs in the three transport modes: polling only, websocket only, and
polling-then-upgrade.  Two python-engineio habits shape the set-up (both noted in the report and
the chapter):

* it advertises ``pingInterval`` as ``int(seconds) * 1000``: 0.3 s would go out as 0, so the
  heartbeat scenarios use whole seconds;
* after the client's ``1`` over polling, the held GET is not ended (the reference server ends it
  with a noop); the aiohttp runner cancels the handler when our client drops that connection;
* a server-side ``disconnect(sid)`` over polling is delivered only by a GET that is already
  waiting: a GET arriving after it gets a 400 and ``disconnect`` waits for ever for its close
  packet to be taken.  The test first waits until the client's GET is held.

Timeouts are guards against hangs, never measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import engineio
import engineio.async_socket
import pytest
from aiohttp import web

from lablib.engineio import AsyncClient
from lablib.engineio import EngineClientState
from tests.aio_support import aiohttp_site, asyncio_test, until
from tests.wire import eio_recorder

pytestmark = pytest.mark.interop

MODES = {
    "polling": (["polling"], "polling"),
    "websocket": (["websocket"], "websocket"),
    "upgrade": (["polling", "websocket"], "websocket"),
}


@contextlib.asynccontextmanager
async def engineio_server(**options):
    """python-engineio on aiohttp; yields (server, url, log of server events, HTTP requests seen)."""
    options.setdefault("ping_interval", 5)
    options.setdefault("ping_timeout", 5)
    eio = engineio.AsyncServer(async_mode="aiohttp", **options)
    log: list = []
    requests: list[tuple[str, str]] = []

    @eio.on("connect")
    async def connect(sid, environ):
        log.append(("connect", sid))

    @eio.on("message")
    async def message(sid, data):
        log.append(("message", data))
        if data == "echo" or data == b"echo":
            await eio.send(sid, data)

    @eio.on("disconnect")
    async def disconnect(sid, reason):
        log.append(("disconnect", reason))

    @web.middleware
    async def count(request, handler):
        requests.append((request.method, request.query.get("transport", "")))
        return await handler(request)

    app = web.Application(middlewares=[count])
    eio.attach(app)
    # After a client's "1", python-engineio leaves the held GET waiting until pingInterval +
    # pingTimeout (the reference server ends it with a noop); our client closes that
    # connection, and handler_cancellation lets aiohttp end the handler then.
    async with aiohttp_site(app, handler_cancellation=True) as port:
        yield eio, f"http://127.0.0.1:{port}", log, requests


async def poll_held(eio, sid: str) -> None:
    """Wait until the client's long-poll GET waits at python-engineio (see the module doc)."""
    await until(lambda: bool(eio.sockets[sid].queue._getters))


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_connect_and_messages_both_ways(mode):
    transports, final = MODES[mode]
    async with engineio_server() as (eio, url, log, requests):
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        await client.connect(url, transports=transports)
        assert (client.transport, client.sid) == (final, log[0][1])
        assert client.state is (EngineClientState.UPGRADED if mode == "upgrade" else EngineClientState.OPEN)
        await client.send("echo")
        await client.send(b"echo")
        await client.send("h\u00e9llo \u2603")
        await client.send(bytes(range(256)))
        await until(lambda: len(events) == 3)
        assert events == ["connect", "echo", b"echo"]
        await until(lambda: len(log) == 5)
        assert log[1:] == [("message", "echo"), ("message", b"echo"),
                           ("message", "h\u00e9llo \u2603"), ("message", bytes(range(256)))]
        await client.disconnect()
        if mode == "upgrade":  # the upgrade's WebSocket carried the session after the probe
            assert ("GET", "websocket") in requests


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_many_messages_sent_quickly_arrive_in_order(mode):
    transports, _ = MODES[mode]
    async with engineio_server() as (eio, url, log, requests):
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        await client.connect(url, transports=transports)
        if mode == "polling":
            await poll_held(eio, client.sid)
            gets_before = requests.count(("GET", "polling"))
        for i in range(20):
            await eio.send(client.sid, f"m{i}")
        await until(lambda: len(events) == 21)
        assert events == ["connect"] + [f"m{i}" for i in range(20)]
        if mode == "polling":  # batched: far fewer polls than messages
            assert requests.count(("GET", "polling")) - gets_before < 20
        await client.disconnect()


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_server_initiated_disconnect(mode):
    transports, _ = MODES[mode]
    async with engineio_server() as (eio, url, log, requests):
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        await client.connect(url, transports=transports)
        if client.transport == "polling":
            await poll_held(eio, client.sid)
        await eio.disconnect(client.sid)
        await client.wait()
        assert events == ["connect", ("disconnect", "transport close")]
        assert log[-1] == ("disconnect", "server disconnect")


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_client_initiated_disconnect(mode):
    transports, _ = MODES[mode]
    async with engineio_server() as (eio, url, log, requests):
        client = AsyncClient(rng=random.Random(1))
        events = eio_recorder(client)
        await client.connect(url, transports=transports)
        await client.disconnect()
        assert events == ["connect", ("disconnect", "forced close")]
        assert client.state is EngineClientState.CLOSED
        await until(lambda: log[-1][0] == "disconnect")
        assert log[-1] == ("disconnect", "client disconnect")
        await until(lambda: not eio.sockets)  # python-engineio drops the session after the event


@asyncio_test
async def test_pings_are_answered_in_every_mode():
    """Three clients at once stay connected past pingInterval + pingTimeout (1 s + 1 s)."""
    async with engineio_server(ping_interval=1, ping_timeout=1) as (eio, url, log, requests):
        clients = {mode: AsyncClient(rng=random.Random(1)) for mode in MODES}
        for mode, client in clients.items():
            await client.connect(url, transports=MODES[mode][0])
        await asyncio.sleep(2.3)  # each has answered at least two pings meanwhile
        for mode, client in clients.items():
            assert (client.state, client.transport) == (
                EngineClientState.UPGRADED if mode == "upgrade" else EngineClientState.OPEN, MODES[mode][1])
        assert len(eio.sockets) == 3 and not [entry for entry in log if entry[0] == "disconnect"]
        for client in clients.values():
            await client.disconnect()


@asyncio_test
async def test_a_server_that_stops_pinging_is_declared_dead(monkeypatch):
    """python-engineio with its pings switched off: each client gives up after
    pingInterval + pingTimeout (1 s + 0.5 s) with the reason "ping timeout"."""
    async def no_ping(self):
        return None

    class LaterReads:
        """python-engineio also drops a WebSocket that sends nothing for pingInterval +
        pingTimeout, which races the client's own verdict: push that read deadline 5 s out
        (in its socket module only), so the test sees the client decide."""
        def __getattr__(self, name):
            return getattr(asyncio, name)

        @staticmethod
        async def wait_for(awaitable, timeout):
            return await asyncio.wait_for(awaitable, None if timeout is None else timeout + 5)

    monkeypatch.setattr(engineio.async_socket.AsyncSocket, "_send_ping", no_ping)
    monkeypatch.setattr(engineio.async_socket, "asyncio", LaterReads())
    async with engineio_server(ping_interval=1, ping_timeout=0.5) as (eio, url, log, requests):
        clients = {mode: AsyncClient(rng=random.Random(1), close_timeout=0.5) for mode in MODES}
        events = {mode: eio_recorder(client) for mode, client in clients.items()}
        for mode, client in clients.items():
            await client.connect(url, transports=MODES[mode][0])
        for client in clients.values():
            await client.wait()
        for mode in MODES:
            assert events[mode] == ["connect", ("disconnect", "ping timeout")], mode
