"""lablib's Socket.IO client against python-socketio's AsyncServer (aiohttp) on 127.0.0.1.

Every scenario runs in the three transport modes: polling only, websocket only, and
polling-then-upgrade.  Reconnection goes through lablib's capture relay, which can cut the TCP
connections (RSTs) and refuse new ones.  Timeouts are guards against hangs, never measurements;
the backoff is checked on the delays the client *drew* (against a Backoff with the same seed),
not on the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
import socketio
from aiohttp import web

from lablib.capture.relay import Relay
from lablib.socketio.backoff import Backoff
from lablib.socketio.client import AsyncClient, ConnectionError
from tests import aio_support
from tests.aio_support import aiohttp_site, until
from tests.wire import names, sio_recorder

pytestmark = pytest.mark.interop

#: These scenarios get a longer guard than the default (10 s).
asyncio_test = aio_support.asyncio_test(timeout=15.0)
MODES = {
    "polling": (["polling"], "polling"),
    "websocket": (["websocket"], "websocket"),
    "upgrade": (["polling", "websocket"], "websocket"),
}

#: Strings, numbers, nested JSON, and binary attachments nested in lists and dicts.
PAYLOADS = [
    ("héllo ✓", "", "line\nbreak \x1e record separator"),
    (0, -17, 3.25, 2**53 - 1, True, False, None),
    ({"a": [1, {"b": "c"}, []], "n": None, "deep": {"x": {"y": {"z": [1.5, "w"]}}}},),
    (b"\x00\x01\xff", [b"", "x", {"k": b"\x89PNG\r\n"}], {"list": [b"a", [b"b", {"c": b"c"}]]}),
]


@contextlib.asynccontextmanager
async def socketio_server():
    """python-socketio on aiohttp; yields (server, port, log of what the server saw).

    "/" and "/chat": ``echo`` acks its arguments and emits them back as ``echoed``; ``log``
    is only recorded.  An auth ``{"token": "bad"}`` is
    refused with a message and data.
    """
    sio = socketio.AsyncServer(async_mode="aiohttp")
    log: list = []

    for namespace in ("/", "/chat"):
        def register(namespace=namespace):
            @sio.on("connect", namespace=namespace)
            async def connect(sid, environ, auth):
                if auth == {"token": "bad"}:
                    raise socketio.exceptions.ConnectionRefusedError("bad token", {"code": 7})
                log.append(("connect", namespace, sid, auth))

            @sio.on("disconnect", namespace=namespace)
            async def disconnect(sid, reason):
                log.append(("disconnect", namespace, sid, reason))

            @sio.on("echo", namespace=namespace)
            async def echo(sid, *args):
                log.append(("echo", namespace, sid, args))
                await sio.emit("echoed", args, to=sid, namespace=namespace)
                return args

            @sio.on("log", namespace=namespace)
            async def record(sid, *args):
                log.append(("log", namespace, sid, args))


        register()

    app = web.Application()
    sio.attach(app)
    async with aiohttp_site(app, handler_cancellation=True) as port:
        yield sio, port, log


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_events_both_ways(mode):
    transports, final = MODES[mode]
    async with socketio_server() as (server, port, log):
        client = AsyncClient(rng=random.Random(1))
        events = sio_recorder(client, also=("echoed",))
        await client.connect(f"http://127.0.0.1:{port}", transports=transports)
        assert client.connected and client.transport() == final
        for payload in PAYLOADS:
            await client.emit("echo", payload)
        await until(lambda: len([e for e in events if e[0] == "echoed"]) == len(PAYLOADS))
        sid = client.sid
        assert [entry[3] for entry in log if entry[0] == "echo"] == PAYLOADS
        assert all(entry[2] == sid for entry in log if entry[0] == "echo")
        assert [e[1] for e in events if e[0] == "echoed"] == PAYLOADS
        # a single list argument stays one argument
        await client.emit("echo", [1, [b"\x02"]])
        await until(lambda: log[-1][0] == "echo" and log[-1][3] == ([1, [b"\x02"]],))
        await client.disconnect()
        assert events[0] == "connect" and events[-1] == ("disconnect", "io client disconnect")


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_acks_both_ways(mode):
    transports, final = MODES[mode]
    async with socketio_server() as (server, port, log):
        client = AsyncClient(rng=random.Random(2))
        asked = []

        @client.event
        async def question(*args):
            asked.append(args)
            return ("answer", args[0], {"bin": b"\x07"})   # a tuple: several ack arguments

        @client.on("single")
        def single(value):
            return [value, b"\x08"]                       # one ack argument (a list)

        @client.on("nothing")
        def nothing():
            return None                                   # an ack without arguments

        await client.connect(f"http://127.0.0.1:{port}", transports=transports)
        # client -> server: call() returns the ack's arguments
        for payload in PAYLOADS:
            answer = await client.call("echo", payload, timeout=5)
            assert answer == (payload if len(payload) > 1 else payload[0])
        # client -> server: emit with a callback
        acked = asyncio.get_running_loop().create_future()
        await client.emit("echo", ("cb", b"\x01"), callback=lambda *args: acked.set_result(args))
        assert await acked == ("cb", b"\x01")
        # server -> client: python-socketio's call() gets the handler's return value
        sid = client.sid
        nested = {"q": [1, b"\x00\x01", {"r": b"\xfe"}]}
        assert await server.call("question", nested, to=sid, timeout=5) == \
            ("answer", nested, {"bin": b"\x07"})
        assert asked == [(nested,)]
        assert await server.call("single", "v", to=sid, timeout=5) == ["v", b"\x08"]
        assert await server.call("nothing", to=sid, timeout=5) is None
        # a server ack callback (emit with callback) as well
        got = asyncio.get_running_loop().create_future()
        await server.emit("single", 5, to=sid, callback=lambda *a: got.set_result(a))
        assert await got == ([5, b"\x08"],)
        await client.disconnect()


@asyncio_test
async def test_call_times_out_when_no_ack_comes():
    async with socketio_server() as (server, port, log):
        client = AsyncClient()
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
        # python-socketio does not acknowledge an event it has no handler for
        with pytest.raises(TimeoutError):
            await client.call("no_such_handler", 1, timeout=0.2)
        assert await client.call("echo", 2, timeout=5) == 2   # still usable, ids go on
        await client.disconnect()


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_two_namespaces_share_one_engineio_connection(mode):
    transports, final = MODES[mode]
    async with socketio_server() as (server, port, log):
        client = AsyncClient(rng=random.Random(3))
        main_events = sio_recorder(client, "/", also=("echoed",))
        chat_events = sio_recorder(client, "/chat", also=("echoed",))
        await client.connect(f"http://127.0.0.1:{port}", transports=transports,
                             namespaces=["/", "/chat"], auth={"user": "ada"})
        assert set(client.namespaces) == {"/", "/chat"}
        main_sid, chat_sid = client.get_sid("/"), client.get_sid("/chat")
        assert main_sid != chat_sid
        # one Engine.IO session at the server carries both namespaces
        assert len(server.eio.sockets) == 1
        eio_sid = next(iter(server.eio.sockets))
        assert server.manager.eio_sid_from_sid(main_sid, "/") == eio_sid
        assert server.manager.eio_sid_from_sid(chat_sid, "/chat") == eio_sid
        assert sorted((e[1], e[3]) for e in log if e[0] == "connect") == \
            [("/", {"user": "ada"}), ("/chat", {"user": "ada"})]
        await client.emit("echo", ("to chat", b"\x01"), namespace="/chat")
        await client.emit("echo", "to main")
        await until(lambda: ("echoed", ("to main",)) in main_events
                    and ("echoed", ("to chat", b"\x01")) in chat_events)
        assert ("echoed", ("to chat", b"\x01")) not in main_events
        assert ("echoed", ("to main",)) not in chat_events
        assert {(e[1], e[2]) for e in log if e[0] == "echo"} == {("/chat", chat_sid), ("/", main_sid)}
        assert await client.call("echo", 9, namespace="/chat", timeout=5) == 9
        # leaving one namespace keeps the connection for the other
        await client.disconnect("/chat")
        await until(lambda: ("disconnect", "/chat", chat_sid, "client disconnect") in log)
        assert client.connected and len(server.eio.sockets) == 1
        assert await client.call("echo", 10, timeout=5) == 10
        await client.disconnect()
        assert chat_events[-1] == ("disconnect", "io client disconnect")
        assert main_events[-1] == ("disconnect", "io client disconnect")


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_auth_accepted_and_refused(mode):
    transports, final = MODES[mode]
    async with socketio_server() as (server, port, log):
        client = AsyncClient()
        events = sio_recorder(client, also=("echoed",))
        await client.connect(f"http://127.0.0.1:{port}", transports=transports,
                             auth={"token": "good"})
        assert log[-1] == ("connect", "/", client.sid, {"token": "good"})
        await client.disconnect()

        refused = AsyncClient()
        refused_events = sio_recorder(refused, also=("echoed",))
        with pytest.raises(ConnectionError) as caught:
            await refused.connect(f"http://127.0.0.1:{port}", transports=transports,
                                  auth={"token": "bad"})
        assert str(caught.value) == "bad token"
        assert caught.value.errors == {"/": "bad token"}
        assert caught.value.data == {"/": {"code": 7}}
        assert refused_events == [("connect_error", {"message": "bad token", "data": {"code": 7}})]
        assert not refused.connected and refused.sid is None
        await refused.wait()   # returns: nothing is left running
        assert events[0] == "connect"


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_server_initiated_disconnect_is_not_reconnected(mode):
    transports, final = MODES[mode]
    async with socketio_server() as (server, port, log):
        client = AsyncClient(reconnection_delay=0.01, rng=random.Random(4))
        events = sio_recorder(client, also=("echoed",))
        await client.connect(f"http://127.0.0.1:{port}", transports=transports)
        sid = client.sid
        await server.disconnect(sid)
        await asyncio.wait_for(client.wait(), 5)
        assert events == ["connect", ("disconnect", "io server disconnect")]
        assert not client.connected and client.reconnect_delays_ms == []
        assert ("disconnect", "/", sid, "server disconnect") in log
        await until(lambda: not server.eio.sockets)   # our client closed the Engine.IO session


@pytest.mark.parametrize("mode", MODES)
@asyncio_test
async def test_reconnection_after_a_cut(mode):
    transports, final = MODES[mode]
    async with socketio_server() as (server, port, log), Relay("127.0.0.1", port) as relay:
        seed = 5
        client = AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.2,
                             rng=random.Random(seed))
        events = sio_recorder(client, also=("echoed",))
        await client.connect(f"http://127.0.0.1:{relay.port}", transports=transports,
                             auth={"token": "good"})
        first_sid = client.sid
        await client.emit("log", "before")
        await until(lambda: ("log", "/", first_sid, ("before",)) in log)

        relay.refuse = True          # the reconnection attempts fail for a while
        relay.cut()                  # the network drops the connection
        await until(lambda: "disconnect" in names(events))
        assert not client.connected and client.sid is None
        # emitted while disconnected: buffered, sent after reconnecting, in order
        for n in range(3):
            await client.emit("log", ("while down", n, b"\x00" * n))
        pending_call = asyncio.ensure_future(client.call("echo", "after", timeout=10))
        await until(lambda: names(events).count("reconnect_error") >= 2)
        relay.refuse = False
        await until(lambda: client.connected)
        assert await pending_call == "after"
        new_sid = client.sid
        assert new_sid != first_sid
        await until(lambda: len([e for e in log if e[0] == "log" and e[2] == new_sid]) == 3)
        after = [e for e in log if e[2] == new_sid]
        assert after[0] == ("connect", "/", new_sid, {"token": "good"})   # auth sent again
        assert [e[3] for e in after if e[0] == "log"] == \
            [("while down", 0, b""), ("while down", 1, b"\x00"), ("while down", 2, b"\x00\x00")]

        # the events, in socket.io-client's order
        assert events[1][1] in ("transport close", "transport error")
        failed = names(events).count("reconnect_error")
        assert names(events) == (["connect", "disconnect"]
                                 + ["reconnect_attempt", "connect_error", "reconnect_error"] * failed
                                 + ["reconnect_attempt", "reconnect", "connect", "echoed"])
        assert [e[1] for e in events if e[0] == "reconnect_attempt"] == list(range(1, failed + 2))
        assert ("reconnect", failed + 1) in events
        # the delays drawn follow socket.io-client's backoff with the same seed
        backoff = Backoff(min_ms=50, max_ms=200, jitter=0.5, rng=random.Random(seed))
        assert client.reconnect_delays_ms == [backoff.duration() for _ in range(failed + 1)]
        assert client.transport() == final
        await client.disconnect()


@asyncio_test
async def test_reconnection_gives_up_after_the_attempts():
    async with socketio_server() as (server, port, log), Relay("127.0.0.1", port) as relay:
        client = AsyncClient(reconnection_attempts=2, reconnection_delay=0.02,
                             reconnection_delay_max=0.05, rng=random.Random(6))
        events = sio_recorder(client, also=("echoed",))
        await client.connect(f"http://127.0.0.1:{relay.port}", transports=["websocket"])
        relay.refuse = True
        relay.cut()
        await asyncio.wait_for(client.wait(), 5)
        assert names(events) == ["connect", "disconnect", "reconnect_attempt", "connect_error",
                         "reconnect_error", "reconnect_attempt", "connect_error",
                         "reconnect_error", "reconnect_failed"]
        assert [e[1] for e in events if e[0] == "reconnect_attempt"] == [1, 2]
        assert len(client.reconnect_delays_ms) == 2
        assert not client.connected
