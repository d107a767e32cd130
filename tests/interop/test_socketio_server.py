"""python-socketio's ``AsyncClient`` against lablib's Socket.IO server, over 127.0.0.1.

Every scenario runs three ways - polling only, websocket only, polling then the upgrade - and
covers what an application relies on: events carrying strings, numbers, nested JSON and binary
attachments nested in lists and dicts (both directions, compared for exact equality); acks both
ways (the client's ``emit(callback=)`` and ``call()``, the server's ``call()`` with a timeout);
two namespaces over one Engine.IO connection; auth accepted and refused; rooms with three
clients; a disconnect started by the server.

Each scenario is an ``async def`` run in a fresh event loop under a guard timeout; nothing is
asserted about how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
import socketio

from lablib.socketio.server import ConnectionRefusedError, Server, serve
from tests import aio_support
from tests.aio_support import until

pytestmark = pytest.mark.interop

#: These scenarios get a longer guard than the default (10 s).
asyncio_test = aio_support.asyncio_test(timeout=15.0)

MODES = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "upgrade": ["polling", "websocket"],
}
TRANSPORT_AFTER_CONNECT = {"polling": "polling", "websocket": "websocket", "upgrade": "websocket"}

#: One value of every JSON kind, with bytes at several depths.
PAYLOAD = {
    "text": "héllo ✓ \"quoted\" \n",
    "int": -42,
    "big": 2**53 - 1,
    "float": 3.25,
    "flags": [True, False, None],
    "nested": {"list": [1, [2, [3, {"deep": "x"}]]], "empty": {}, "none": []},
    "bin": b"\x00\x01\xfe\xff",
    "bins": [b"first", {"inner": b"second", "more": [b"", b"\x80" * 300]}],
}


def make_server(**settings) -> Server:
    settings.setdefault("rng", random.Random(11))
    settings.setdefault("ping_interval", 500)
    settings.setdefault("ping_timeout", 500)
    settings.setdefault("close_timeout", 0.3)
    return Server(**settings)


def make_client() -> socketio.AsyncClient:
    return socketio.AsyncClient(reconnection=False)


@contextlib.asynccontextmanager
async def connected(port: int, mode: str, **options):
    """A python-socketio client connected to the lablib server in ``mode``."""
    client = make_client()
    await client.connect(f"http://127.0.0.1:{port}", transports=MODES[mode], wait_timeout=5,
                         **options)
    try:
        assert client.transport() == TRANSPORT_AFTER_CONNECT[mode]
        yield client
    finally:
        await client.disconnect()


modes = pytest.mark.parametrize("mode", list(MODES))


# --- events -----------------------------------------------------------------------------------------

@modes
@asyncio_test
async def test_events_with_every_kind_of_data_both_ways(mode):
    sio = make_server()
    received = []

    @sio.on("up")
    async def up(sid, *args):
        received.append(args)
        await sio.emit("down", args, to=sid)   # a tuple: the same arguments back

    async with serve(sio) as server:
        async with connected(server.port, mode) as client:
            downs = []
            client.on("down", lambda *args: downs.append(args))
            await client.emit("up", "just text")
            await client.emit("up", 7)
            await client.emit("up", PAYLOAD)
            await client.emit("up", ("several", 1, PAYLOAD, b"\x01"))
            await until(lambda: len(downs) == 4)
    expected = [("just text",), (7,), (PAYLOAD,), ("several", 1, PAYLOAD, b"\x01")]
    assert received == expected
    assert downs == expected


@modes
@asyncio_test
async def test_client_acks_callback_and_call(mode):
    sio = make_server()
    sio.on("echo", lambda sid, *args: args)
    sio.on("nothing", lambda sid: None)

    async with serve(sio) as server:
        async with connected(server.port, mode) as client:
            acks = []
            await client.emit("echo", ("a", PAYLOAD), callback=lambda *args: acks.append(args))
            assert await client.call("echo", PAYLOAD, timeout=5) == PAYLOAD
            assert await client.call("echo", (1, 2), timeout=5) == (1, 2)
            assert await client.call("nothing", timeout=5) is None
            await until(lambda: acks)
    assert acks == [("a", PAYLOAD)]


@modes
@asyncio_test
async def test_server_call_to_the_client_and_its_timeout(mode):
    sio = make_server()
    release = asyncio.Event()
    sids = []
    sio.on("connect", lambda sid, request, auth: sids.append(sid))

    async with serve(sio) as server:
        async with connected(server.port, mode) as client:
            @client.on("double")
            async def double(value):
                return value * 2, {"bin": value.encode() if isinstance(value, str) else b"-"}

            @client.on("slow")
            async def slow():
                await release.wait()
                return "late"

            await until(lambda: sids)
            assert await sio.call("double", "ab", to=sids[0], timeout=5) == ("abab", {"bin": b"ab"})
            with pytest.raises(TimeoutError):
                await sio.call("slow", to=sids[0], timeout=0.1)
            release.set()
            callback_args = []
            await sio.emit("double", 21, to=sids[0], callback=lambda *args: callback_args.append(args))
            await until(lambda: callback_args)
    assert callback_args == [(42, {"bin": b"-"})]


# --- namespaces and auth ----------------------------------------------------------------------------

@modes
@asyncio_test
async def test_two_namespaces_over_one_engineio_connection(mode):
    sio = make_server()
    auths = {}
    sio.on("connect", lambda sid, request, auth: auths.setdefault("/", auth))
    sio.on("connect", lambda sid, request, auth: auths.setdefault("/chat", auth), namespace="/chat")
    sio.on("where", lambda sid: "main")
    sio.on("where", lambda sid: "chat", namespace="/chat")

    async with serve(sio) as server:
        async with connected(server.port, mode, namespaces=["/", "/chat"],
                             auth={"token": "t"}) as client:
            assert len(sio.eio.sessions) == 1
            assert sorted(client.namespaces) == ["/", "/chat"]
            assert await client.call("where", timeout=5) == "main"
            assert await client.call("where", namespace="/chat", timeout=5) == "chat"
            chat_sid = client.get_sid("/chat")
            await sio.emit("hello", b"\x02", to=chat_sid, namespace="/chat")
            got = []
            client.on("hello", lambda data: got.append(data), namespace="/chat")
            await sio.emit("hello", b"\x03", namespace="/chat")
            await until(lambda: got)
            assert sio.core.sids("/") == [client.get_sid("/")]
            assert sio.core.sids("/chat") == [chat_sid]
    assert auths == {"/": {"token": "t"}, "/chat": {"token": "t"}}


@modes
@asyncio_test
async def test_auth_accepted_and_refused(mode):
    sio = make_server()

    @sio.event
    async def connect(sid, request, auth):
        if not auth or auth.get("token") != "good":
            raise ConnectionRefusedError("bad token", {"code": 7})

    async with serve(sio) as server:
        async with connected(server.port, mode, auth={"token": "good"}) as client:
            assert client.connected
        client = make_client()
        errors = []
        client.on("connect_error", lambda data: errors.append(data))
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(f"http://127.0.0.1:{server.port}", transports=MODES[mode],
                                 auth={"token": "bad"}, wait_timeout=5)
        assert errors == [{"message": "bad token", "data": {"code": 7}}]
        assert not client.connected
        await client.disconnect()


# --- rooms and disconnection ------------------------------------------------------------------------

@modes
@asyncio_test
async def test_rooms_with_three_clients(mode):
    sio = make_server()

    @sio.on("join")
    async def join(sid, room):
        await sio.enter_room(sid, room)

    @sio.on("shout")
    async def shout(sid, room, text):
        await sio.emit("heard", text, room=room, skip_sid=sid)

    async with serve(sio) as server:
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(connected(server.port, mode))
                       for _ in range(3)]
            heard: list[list] = [[], [], []]
            for index, client in enumerate(clients):
                client.on("heard", lambda text, i=index: heard[i].append(text))
            # call(): each returns once the server has handled it, so the order is known
            await clients[0].call("join", "room", timeout=5)
            await clients[1].call("join", "room", timeout=5)
            assert sio.core.adapter("/").members("room") == [c.get_sid("/") for c in clients[:2]]
            await clients[0].call("shout", ("room", "from 0"), timeout=5)   # only 1 hears it
            await clients[2].call("shout", ("room", "from 2"), timeout=5)   # 2 is no member
            await sio.emit("heard", "everyone")
            await until(lambda: all(h and h[-1] == "everyone" for h in heard))
            assert len(sio.eio.sessions) == 3
    assert heard == [["from 2", "everyone"], ["from 0", "from 2", "everyone"], ["everyone"]]


@modes
@asyncio_test
async def test_server_initiated_disconnect(mode):
    sio = make_server()
    server_reasons = []
    sio.on("disconnect", lambda sid, reason: server_reasons.append(reason))

    async with serve(sio) as server:
        client = make_client()
        client_reasons = []
        client.on("disconnect", lambda reason: client_reasons.append(reason))
        await client.connect(f"http://127.0.0.1:{server.port}", transports=MODES[mode],
                             wait_timeout=5)
        await sio.disconnect(client.get_sid("/"))
        await until(lambda: client_reasons and server_reasons and not sio.eio.sessions)
        await client.disconnect()
    assert client_reasons == [client.reason.SERVER_DISCONNECT]
    assert server_reasons == ["server namespace disconnect"]
    assert not client.connected
