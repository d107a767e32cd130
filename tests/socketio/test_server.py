"""The asyncio Socket.IO server over real sockets on 127.0.0.1, one Engine.IO message at a time.

The client is lablib's Engine.IO client speaking Socket.IO *by hand*: each test sends exact
Socket.IO packets (``0``, ``21["echo","hi"]``, ``51-["up",{"_placeholder":true,"num":0}]`` and
its attachment) and asserts the exact messages the server answers with (``31["hi"]``).  These
are Engine.IO *messages*: on the wire each text one gets Engine.IO's own type ``4`` in front
(``431["hi"]``; a CONNECT_ERROR ``4/x,{...}`` travels as ``44/x,{...}``).  The
server is seeded, so the sids it hands out are known in advance.

Each scenario is an ``async def`` run in a fresh event loop under a guard timeout; nothing is
asserted about how long anything took.  "Nobody else received it" is checked by ordering: a
marker sent to everyone afterwards must be the next message each client sees.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import random
import secrets

import pytest

from lablib.engineio.server_core import generate_sid
from lablib.socketio.server import ConnectionRefusedError, DisconnectedError, Server, serve
from lablib.socketio.server_core import ServerCore
from tests.aio_support import GUARD_TIMEOUT, asyncio_test, until
from tests.wire import RawSocketIO

SEED = 5


def expected_sids(count: int) -> list[str]:
    """The sids a server with rng=Random(SEED) draws, in order (Engine.IO's and Socket.IO's
    come from the same rng: one client that joins "/" gets draws 0 and 1)."""
    rng = random.Random(SEED)
    return [generate_sid(rng) for _ in range(count)]


def make_server(**settings) -> tuple[Server, list[tuple]]:
    """A seeded server recording ``(event, sid, ...)`` and an ``echo`` event acking its args."""
    settings.setdefault("rng", random.Random(SEED))
    settings.setdefault("close_timeout", 0.3)
    sio = Server(**settings)
    events: list[tuple] = []

    @sio.event
    def connect(sid, request, auth):
        events.append(("connect", sid, auth))

    @sio.event
    def disconnect(sid, reason):
        events.append(("disconnect", sid, reason))

    @sio.on("echo")
    def echo(sid, *args):
        events.append(("echo", sid, *args))
        return args

    return sio, events


# --- connecting -------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["polling", "websocket", "upgrade"])
@asyncio_test
async def test_connect_main_namespace_gets_the_seeded_sid(transport):
    sio, events = make_server()
    eio_sid, sid = expected_sids(2)
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port, transport)
        assert raw.client.sid == eio_sid
        await raw.send("0")
        assert await raw.recv() == '0{"sid":"%s"}' % sid
        assert sio.rooms(sid) == [sid]
        await raw.close()
        await until(lambda: len(events) == 2)
    assert events == [("connect", sid, None), ("disconnect", sid, "transport close")]


@asyncio_test
async def test_connect_with_auth_to_a_namespace_with_handlers():
    sio, events = make_server()
    seen = []
    sio.on("connect", lambda sid, request, auth: seen.append((request.path, auth)), namespace="/chat")
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.send('0/chat,{"token":"x"}')
        answer = await raw.recv()
        assert answer == '0/chat,{"sid":"%s"}' % expected_sids(2)[1]
        await raw.close()
    assert seen == [("/socket.io/", {"token": "x"})]


@asyncio_test
async def test_unknown_namespace_is_refused():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.send("0/x,")
        assert await raw.recv() == '4/x,{"message":"Invalid namespace"}'
        await raw.send("0")   # the connection is still usable
        assert (await raw.recv()).startswith('0{"sid":')
        await raw.close()


@asyncio_test
async def test_any_namespace_with_star():
    sio, events = make_server(namespaces="*")
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join("/anything")
        await sio.emit("hello", "you", namespace="/anything")
        assert await raw.recv() == '2/anything,["hello","you"]'
        await sio.emit("hello", "nobody", namespace="/never-asked")   # nobody: no error
        await raw.close()
    assert sid == expected_sids(2)[1]


@asyncio_test
async def test_connect_handler_returning_false_refuses_with_the_default_message():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)
    sio.on("connect", lambda sid, request, auth: False)
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.send("0")
        assert await raw.recv() == '4{"message":"Connection rejected by server"}'
        assert sio.core.sids("/") == []
        await raw.close()


@asyncio_test
async def test_connection_refused_error_carries_message_and_data():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)
    disconnects = []

    @sio.on("connect", namespace="/chat")
    async def connect(sid, request, auth):
        if auth != {"token": "good"}:
            raise ConnectionRefusedError("bad token", {"code": 7})

    sio.on("disconnect", lambda sid, reason: disconnects.append(sid), namespace="/chat")
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.send('0/chat,{"token":"bad"}')
        assert await raw.recv() == '4/chat,{"message":"bad token","data":{"code":7}}'
        await raw.send('0/chat,{"token":"good"}')
        assert (await raw.recv()).startswith('0/chat,{"sid":')
        await raw.close()
        await until(lambda: disconnects)
    assert len(disconnects) == 1   # no disconnect for the refused attempt


@asyncio_test
async def test_builtin_connection_refused_error_is_accepted():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)

    def connect(sid, request, auth):
        raise builtins.ConnectionRefusedError("go away")

    sio.on("connect", connect)
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.send("0")
        assert await raw.recv() == '4{"message":"go away"}'
        await raw.close()


@asyncio_test
async def test_legacy_handler_signatures():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)
    calls = []
    sio.on("connect", lambda sid, request: calls.append("connect"))
    sio.on("disconnect", lambda sid: calls.append("disconnect"))
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.join()
        await raw.send("1")
        await until(lambda: len(calls) == 2)
        await raw.close()
    assert calls == ["connect", "disconnect"]


@asyncio_test
async def test_rooms_entered_in_the_connect_handler():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)

    @sio.event
    async def connect(sid, request, auth):
        await sio.enter_room(sid, "lobby")   # python-socketio style: awaited
        sio.enter_room(sid, "news")           # or not
        assert sio.rooms(sid) == [sid, "lobby", "news"]
        await sio.save_session(sid, {"user": auth["user"]})

    @sio.on("whoami")
    async def whoami(sid):
        return (await sio.get_session(sid))["user"]

    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join(auth={"user": "ada"})
        assert sio.rooms(sid) == [sid, "lobby", "news"]
        await raw.send('27["whoami"]')
        assert await raw.recv() == '37["ada"]'
        await sio.emit("hi", to="lobby")
        assert await raw.recv() == '2["hi"]'
        await raw.close()


# --- events and acks ------------------------------------------------------------------------------

@asyncio_test
async def test_event_without_and_with_ack():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        await raw.send('2["echo","hi"]', '21["echo","hi"]', '22["echo",1,{"a":[true,null]}]')
        assert await raw.recv() == '31["hi"]'      # the first had no id: no ack
        assert await raw.recv() == '32[1,{"a":[true,null]}]'
        await raw.close()
    assert events[1:4] == [("echo", sid, "hi"), ("echo", sid, "hi"), ("echo", sid, 1, {"a": [True, None]})]


@asyncio_test
async def test_handler_return_values_become_the_ack():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)
    sio.on("none", lambda sid: None)
    sio.on("one", lambda sid: "x")
    sio.on("list", lambda sid: [1, 2])
    sio.on("tuple", lambda sid: (1, "two"))
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.join()
        await raw.send('21["none"]', '22["one"]', '23["list"]', '24["tuple"]', '25["unhandled"]',
                       '26["one"]')
        assert [await raw.recv() for _ in range(5)] == \
            ['31[]', '32["x"]', '33[[1,2]]', '34[1,"two"]', '36["x"]']   # no handler: no ack
        await raw.close()


@asyncio_test
async def test_binary_event_and_binary_ack():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        await raw.send('51-["echo",{"_placeholder":true,"num":0}]', b"\x01\x02")
        await raw.send('52-3["echo",[{"_placeholder":true,"num":0},{"k":{"_placeholder":true,"num":1}}]]',
                       b"\x00", b"\xff\xfe")
        assert await raw.recv() == '62-3[[{"_placeholder":true,"num":0},{"k":{"_placeholder":true,"num":1}}]]'
        assert await raw.recv() == b"\x00"
        assert await raw.recv() == b"\xff\xfe"
        await raw.close()
    assert events[1] == ("echo", sid, b"\x01\x02")


@asyncio_test
async def test_catch_all_handler():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)
    seen = []

    @sio.on("*")
    def anything(event, sid, *args):
        seen.append((event, args))
        return event

    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.join()
        await raw.send('21["whatever",1,2]')
        assert await raw.recv() == '31["whatever"]'
        await raw.close()
    assert seen == [("whatever", (1, 2))]


@asyncio_test
async def test_events_of_one_client_are_handled_in_order():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)
    handled = []

    @sio.on("work")
    async def work(sid, n):
        await asyncio.sleep(0.01 if n % 2 == 0 else 0)   # a slow one must not be overtaken
        handled.append(n)
        return n

    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.join()
        await raw.send(*[f'2{n}["work",{n}]' for n in range(10)])
        assert [await raw.recv() for _ in range(10)] == [f"3{n}[{n}]" for n in range(10)]
        await raw.close()
    assert handled == list(range(10))


@asyncio_test
async def test_server_emit_shapes_of_data():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        await sio.emit("a", to=sid)
        await sio.emit("b", "text", to=sid)
        await sio.emit("c", ("several", 2, None), to=sid)
        await sio.emit("d", {"nested": [1, {"bin": b"\x07"}]}, to=sid)
        await sio.send("just a message", to=sid)
        assert [await raw.recv() for _ in range(6)] == [
            '2["a"]', '2["b","text"]', '2["c","several",2,null]',
            '51-["d",{"nested":[1,{"bin":{"_placeholder":true,"num":0}}]}]', b"\x07",
            '2["message","just a message"]']
        await raw.close()


@asyncio_test
async def test_call_returns_the_ack_and_counts_ids_from_zero():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        first = asyncio.ensure_future(sio.call("q", 1, to=sid, timeout=5))
        assert await raw.recv() == '20["q",1]'
        await raw.send("30[5]")
        assert await first == 5
        second = asyncio.ensure_future(sio.call("q", to=sid, timeout=5))
        assert await raw.recv() == '21["q"]'
        await raw.send('31["a",{"b":2}]')
        assert await second == ("a", {"b": 2})
        third = asyncio.ensure_future(sio.call("q", to=sid))
        assert await raw.recv() == '22["q"]'
        await raw.send("32[]")
        assert await third is None
        await raw.close()


@asyncio_test
async def test_call_times_out_and_a_late_ack_is_ignored():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        with pytest.raises(TimeoutError):
            await sio.call("q", to=sid, timeout=0.05)
        assert await raw.recv() == '20["q"]'
        await raw.send("30[1]", '21["echo","still here"]')   # the late ack changes nothing
        assert await raw.recv() == '31["still here"]'
        await raw.close()


@asyncio_test
async def test_call_to_a_client_that_leaves_raises_disconnected():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        pending = asyncio.ensure_future(sio.call("q", to=sid, timeout=30))
        assert await raw.recv() == '20["q"]'
        await raw.send("1")
        with pytest.raises(DisconnectedError):
            await pending
        with pytest.raises(DisconnectedError):
            await sio.call("q", to=sid)
        await raw.close()


@asyncio_test
async def test_a_handler_can_call_its_own_client():
    sio = Server(rng=random.Random(SEED), close_timeout=0.3)

    @sio.on("ask")
    async def ask(sid):
        answer = await sio.call("question", to=sid, timeout=5)
        return f"you said {answer}"

    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.join()
        await raw.send('27["ask"]')
        assert await raw.recv() == '20["question"]'
        await raw.send('30["yes"]')
        assert await raw.recv() == '37["you said yes"]'
        await raw.close()


@asyncio_test
async def test_emit_with_callback():
    sio, events = make_server()
    acks = []
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        await sio.emit("q", "x", to=sid, callback=lambda *args: acks.append(args))
        assert await raw.recv() == '20["q","x"]'
        await raw.send('30["ok",1]')
        await until(lambda: acks)
        await raw.close()
    assert acks == [("ok", 1)]


@asyncio_test
async def test_a_handler_can_call_its_own_client_while_the_queue_is_full():
    """The handler waits for an ack; meanwhile the client's events fill the queue; the ack
    comes behind them.  The receive path must read on to it instead of waiting for room."""
    sio = Server(rng=random.Random(5), close_timeout=0.3, max_queue=1)
    answers = []

    @sio.on("go")
    async def go(sid):
        answers.append(await sio.call("question", to=sid, timeout=GUARD_TIMEOUT))

    sio.on("x", lambda sid: None)
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.join()
        await raw.send('2["go"]', '2["x"]', '2["x"]', '2["x"]')
        assert await raw.recv() == '20["question"]'
        await raw.send('30["answer"]')
        await until(lambda: answers)
        await raw.close()
    assert answers == ["answer"]


# --- namespaces, rooms, broadcast -----------------------------------------------------------------

@asyncio_test
async def test_two_namespaces_share_one_engineio_connection():
    sio, events = make_server()
    sio.on("echo", lambda sid, x: ("chat", x), namespace="/chat")
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        main_sid = await raw.join()
        chat_sid = await raw.join("/chat")
        assert main_sid != chat_sid
        assert len(sio.eio.sessions) == 1
        await raw.send('21["echo","a"]', '2/chat,2["echo","b"]')
        assert await raw.recv() == '31["a"]'
        assert await raw.recv() == '3/chat,2["chat","b"]'
        await raw.send("1/chat,")   # leaving one namespace keeps the other
        await raw.send('23["echo","c"]')
        assert await raw.recv() == '33["c"]'
        await raw.close()


@asyncio_test
async def test_a_namespace_at_the_end_of_the_packet():
    """``0/admin`` and ``1/admin`` (no trailing ','), as socket.io-parser reads them: the
    namespace runs to the end of the text.  Our answers still write ``/admin,``."""
    sio, events = make_server()
    sio.on("echo", lambda sid, x: ("admin", x), namespace="/admin")
    eio_sid, main_sid, admin_sid = expected_sids(3)
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.send("0/nowhere")
        assert await raw.recv() == '4/nowhere,{"message":"Invalid namespace"}'
        assert await raw.join() == main_sid
        await raw.send("0/admin")
        assert await raw.recv() == '0/admin,{"sid":"%s"}' % admin_sid
        await raw.send("1/admin")   # leaves /admin only
        await until(lambda: not sio.core.is_connected(admin_sid, "/admin"))
        assert sio.core.is_connected(main_sid, "/")
        await raw.send('2/admin,1["echo","x"]', '22["echo","y"]')
        assert await raw.recv() == '32["y"]'   # nothing for /admin: it was left
        assert len(sio.eio.sessions) == 1
        await raw.close()


async def open_clients(port: int, count: int) -> tuple[list[RawSocketIO], list[str]]:
    clients, sids = [], []
    for _ in range(count):
        raw = await RawSocketIO().open(port)
        clients.append(raw)
        sids.append(await raw.join())
    return clients, sids


@asyncio_test
async def test_room_broadcast_reaches_only_members_and_skips_the_sender():
    sio, events = make_server()
    async with serve(sio) as server:
        clients, sids = await open_clients(server.port, 3)
        sio.enter_room(sids[0], "room")
        sio.enter_room(sids[1], "room")
        await sio.emit("news", 1, room="room")
        await sio.emit("news", 2, to="room", skip_sid=sids[0])
        await sio.emit("marker")
        assert [await clients[0].recv() for _ in range(2)] == ['2["news",1]', '2["marker"]']
        assert [await clients[1].recv() for _ in range(3)] == ['2["news",1]', '2["news",2]', '2["marker"]']
        assert await clients[2].recv() == '2["marker"]'
        sio.leave_room(sids[1], "room")
        assert sio.rooms(sids[1]) == [sids[1]]
        await sio.emit("news", 3, to=["room", sids[2]])
        assert await clients[0].recv() == '2["news",3]'
        assert await clients[2].recv() == '2["news",3]'
        for raw in clients:
            await raw.close()


# --- disconnection and bad input ------------------------------------------------------------------

@asyncio_test
async def test_client_namespace_disconnect():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        await raw.send("1")
        await until(lambda: len(events) == 2)
        assert events[1] == ("disconnect", sid, "client namespace disconnect")
        assert len(sio.eio.sessions) == 1   # Engine.IO stays open
        await raw.close()


@asyncio_test
async def test_server_disconnect_sends_disconnect_packet():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        await sio.disconnect(sid)
        assert await raw.recv() == "1"
        await until(lambda: len(events) == 2)
        assert events[1] == ("disconnect", sid, "server namespace disconnect")
        await sio.disconnect(sid)   # twice: nothing happens
        await raw.close()


@asyncio_test
async def test_server_close_disconnects_everyone():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
    await asyncio.wait_for(raw.disconnected.wait(), GUARD_TIMEOUT)
    assert events[-1] == ("disconnect", sid, "server shutting down")


@pytest.mark.parametrize("garbage, reason", [
    ("9", "parse error"),
    ('2["not", "json"', "parse error"),
])
@asyncio_test
async def test_garbage_closes_the_connection(garbage, reason):
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        await raw.send(garbage)
        await asyncio.wait_for(raw.disconnected.wait(), GUARD_TIMEOUT)
        await until(lambda: len(events) == 2)
    assert events[1] == ("disconnect", sid, reason)


@asyncio_test
async def test_an_event_before_connect_closes_the_connection():
    sio, events = make_server()
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.send('2["echo","too early"]')
        await asyncio.wait_for(raw.disconnected.wait(), GUARD_TIMEOUT)
    assert events == []


@asyncio_test
async def test_connect_timeout_closes_a_silent_connection():
    sio, events = make_server(connect_timeout=50)
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await asyncio.wait_for(raw.disconnected.wait(), GUARD_TIMEOUT)
        assert sio.eio.sessions == {}


@asyncio_test
async def test_a_failing_handler_is_logged_and_the_connection_lives_on(caplog):
    sio, events = make_server()

    @sio.on("boom")
    def boom(sid):
        raise RuntimeError("bug in the application")

    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.join()
        await raw.send('21["boom"]', '22["echo","after"]')
        assert await raw.recv() == '32["after"]'   # no ack for the failed handler
        await raw.close()
    assert "bug in the application" in caplog.text


def test_event_decorator_forms():
    sio = Server()

    @sio.event
    def chat(sid):
        pass

    @sio.event(namespace="/admin")
    def stats(sid):
        pass

    assert sio.handlers == {"/": {"chat": chat}, "/admin": {"stats": stats}}
    assert sio.core.adapter("/admin") is not None   # a handler's namespace is accepted


@asyncio_test
async def test_serve_a_mapping_of_handlers_awaited():
    server = await serve({"echo": lambda sid, x: x}, "127.0.0.1", 0, rng=random.Random(SEED),
                         close_timeout=0.3)
    try:
        raw = await RawSocketIO().open(server.port)
        await raw.join()
        await raw.send('21["echo","mapped"]')
        assert await raw.recv() == '31["mapped"]'
        await raw.close()
    finally:
        await server.close()


# --- secure defaults and the serve() signature ------------------------------------------------------

def test_sids_come_from_the_system_csprng_by_default():
    """Engine.IO and Socket.IO sids are bearer tokens: without an explicit ``rng`` both come
    from ``secrets`` (the OS CSPRNG), never from a Mersenne Twister; seeding ``random`` does
    not make them reproducible.  A seeded generator is used only when passed."""
    sio = Server()
    assert isinstance(sio.core.rng, secrets.SystemRandom)
    assert isinstance(sio.eio.core.rng, secrets.SystemRandom)
    assert isinstance(ServerCore().rng, secrets.SystemRandom)
    random.seed(1)
    first = ServerCore()._new_sid()
    random.seed(1)
    assert ServerCore()._new_sid() != first
    seeded = random.Random(SEED)
    sio = Server(rng=seeded)
    assert sio.core.rng is seeded and sio.eio.core.rng is seeded


def test_serve_takes_explicit_keyword_options():
    """``serve()``'s options are named in its signature, with their defaults (no **options)."""
    parameters = inspect.signature(serve).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name in ("namespaces", "rng", "path", "ping_interval", "ping_timeout",
                 "cors_allowed_origins", "connect_timeout", "max_attachments", "max_queue",
                 "max_payload", "transports", "close_timeout"):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameters[name].annotation is not inspect.Parameter.empty, name
    assert parameters["ping_interval"].default == 25000
    assert parameters["connect_timeout"].default == 45000
    with pytest.raises(TypeError):
        serve({}, "127.0.0.1", 0, no_such_option=1)


def test_serve_offers_every_option_of_the_server():
    """Each Server(...) option can be given to serve() too, with the same default."""
    serve_parameters = inspect.signature(serve).parameters
    for name, parameter in inspect.signature(Server).parameters.items():
        assert name in serve_parameters, name
        assert serve_parameters[name].default == parameter.default, name


# --- the server's surface: transport, handshake request, more endpoints on one port -----------

@asyncio_test
async def test_transport_and_handshake_request_of_each_socket():
    from lablib.socketio.client import AsyncClient
    sio, events = make_server()
    async with serve(sio, "127.0.0.1", 0) as server:
        client = AsyncClient(reconnection=False)
        await client.connect(f"http://127.0.0.1:{server.port}/?room=lobby", headers={"X-Token": "abc"},
                             transports=["polling"])
        sid = client.get_sid()
        assert sio.transport(sid) == "polling"
        assert sio.request(sid).headers.get("x-token") == "abc"
        assert sio.request(sid).target.startswith("/socket.io/?room=lobby&EIO=4&transport=polling&t=")
        await client.disconnect()
        await until(lambda: ("disconnect", sid, "client namespace disconnect") in events)
        with pytest.raises(KeyError):
            sio.transport(sid)


@asyncio_test
async def test_a_socketio_and_an_engineio_endpoint_share_one_port():
    """One port: Socket.IO on /socket.io/, a second Socket.IO server on /admin.io/ with its own
    handlers and timers (an ack timeout there still fires), and plain Engine.IO on /engine.io/."""
    from lablib.engineio import AsyncClient as EngineClient
    from lablib.engineio.server import Server as EngineServer
    from lablib.socketio.client import AsyncClient
    main, _ = make_server()
    admin = Server(path="/admin.io/", close_timeout=0.3, connect_timeout=200)
    admin.on("whoami", lambda sid: "admin")
    plain = EngineServer(close_timeout=0.3)
    plain_messages: list = []
    plain.on("message", lambda sid, data: plain_messages.append(data))
    main.mount(admin)
    main.mount(plain)
    async with serve(main, "127.0.0.1", 0) as server:
        url = f"http://127.0.0.1:{server.port}"
        a, b = AsyncClient(reconnection=False), AsyncClient(reconnection=False)
        await a.connect(url, transports=["websocket"])
        await b.connect(url, transports=["websocket"], socketio_path="admin.io")
        assert await a.call("echo", "x", timeout=5) == "x"
        assert await b.call("whoami", timeout=5) == "admin"
        # the mounted server's timers run: a connection that joins no namespace is closed
        silent = EngineClient(close_timeout=0.3)
        closed = asyncio.Event()
        silent.on("disconnect", lambda reason: closed.set())
        await silent.connect(url, transports=["websocket"], path="/admin.io/")
        await asyncio.wait_for(closed.wait(), GUARD_TIMEOUT)
        eio_client = EngineClient(close_timeout=0.3)
        await eio_client.connect(url, transports=["websocket"], path="/engine.io/")
        await eio_client.send("hello")
        await until(lambda: plain_messages == ["hello"])
        await eio_client.disconnect()
        await a.disconnect()
        await b.disconnect()
