"""Recovery with the session store outside the core: the async interface, and Redis.

First the sans-I/O side (the core asks the driver's store with RestoreSession/PersistSession
and takes ``offset=``), then the Redis store's format (``@socket.io/redis-streams-adapter``'s
keys and stream entries) against the embedded Redis, then end to end: the same cut with the
async in-memory store, and a client recovered by a *new* server on the same Redis after the
first one stopped.  Two worker processes behind the balancer: tests/cluster.
"""

from __future__ import annotations

import base64
import json
import random

import msgpack
import pytest
import redis.asyncio as aioredis

from lablib.capture.relay import Relay
from lablib.socketio.client import AsyncClient
from lablib.socketio.events import (ConnectReceived, PersistSession, RestoreSession, Send)
from lablib.socketio.recovery import (AsyncInMemorySessionStore, RecoveryOptions, Restored,
                                      Session)
from lablib.socketio.redis_adapter import RedisAdapter
from lablib.socketio.redis_recovery import RedisSessionStore
from lablib.socketio.server import Server, serve
from lablib.socketio.server_core import ServerCore
from tests.aio_support import asyncio_test, until
from tests.redis_support import redis_url  # noqa: F401 (a fixture)


def _sent(outputs) -> list:
    return [m for o in outputs if isinstance(o, Send) for m in o.messages]


# --- the core with the driver's store ------------------------------------------------------------

def _driver_core() -> ServerCore:
    return ServerCore(rng=random.Random(1), connection_state_recovery=True, driver_store=True)


def test_the_core_asks_the_driver_to_persist_and_restore_and_holds_packets_meanwhile():
    core = _driver_core()
    assert core.store() is None
    core.engine_opened("e1", 0.0)
    (request,) = core.receive("e1", "0", 0.0)
    answer = json.loads(_sent(core.accept("e1"))[0][1:])
    sid, pid = answer["sid"], answer["pid"]
    core.enter_room(sid, "blue")
    assert _sent(core.emit("news", ["x"], offset="5-0")) == ['2["news","x","5-0"]']
    kept, gone = core.engine_closed("e1", "transport close", 2.0)
    assert gone.reason == "transport close" and kept == PersistSession("/", Session(sid, pid, (sid, "blue"), None, 2.0))
    core.engine_opened("e2", 3.0)
    out = core.receive("e2", f'0{{"pid":"{pid}","offset":"5-0"}}', 3.0)
    assert out == [RestoreSession("e2", "/", pid, "5-0")]
    assert core.receive("e2", '2["hello"]', 3.0) == []          # held until the answer
    restored = Restored(kept.session, (["news", "y", "6-0"],))
    (request,) = core.session_restored("e2", "/", restored, 3.0)
    assert request == ConnectReceived("e2", "/", sid, {"pid": pid, "offset": "5-0"}, True)
    out = core.accept("e2")
    assert _sent(out) == [f'0{{"sid":"{sid}","pid":"{pid}"}}', '2["news","y","6-0"]']
    assert out[-1].event == "hello" and core.rooms(sid) == [sid, "blue"]


def test_no_session_from_the_driver_means_a_new_one_and_a_gone_client_keeps_it():
    core = _driver_core()
    core.engine_opened("e1", 0.0)
    core.receive("e1", '0{"pid":"P","offset":"1-0"}', 0.0)
    (request,) = core.session_restored("e1", "/", None, 0.0)
    assert not request.recovered and request.sid != "S"
    core.engine_opened("e2", 0.0)
    core.receive("e2", '0{"pid":"P","offset":"1-0"}', 0.0)
    core.engine_closed("e2", "transport close", 0.5)   # gone while the store looked
    session = Session("S", "P", ("S",), None, 0.0)
    assert core.session_restored("e2", "/", Restored(session, ()), 1.0) == [
        PersistSession("/", session)]                       # kept again, not lost


@pytest.mark.parametrize("driver_store", [False, True])
def test_a_broadcast_while_a_recovered_client_waits_for_its_answer_is_not_lost(driver_store):
    """Between the restore (the log read) and the CONNECT answer, a broadcast to everyone
    goes to the recovered socket after its replay; one the replay had already is not sent
    twice (another server's, logged before the read, delivered by pub/sub after it)."""
    core = ServerCore(rng=random.Random(1), connection_state_recovery=True,
                      driver_store=driver_store)
    core.engine_opened("e1", 0.0)
    core.receive("e1", "0", 0.0)
    answer = json.loads(_sent(core.accept("e1"))[0][1:])
    sid, pid = answer["sid"], answer["pid"]
    offset = "1-0" if driver_store else "1"
    core.emit("news", ["seen"], now=1.0, **({"offset": offset} if driver_store else {}))
    kept = [o for o in core.engine_closed("e1", "transport close", 2.0)
            if isinstance(o, PersistSession)]
    core.engine_opened("e2", 3.0)
    out = core.receive("e2", f'0{{"pid":"{pid}","offset":"{offset}"}}', 3.0)
    if driver_store:
        restored = Restored(kept[0].session, (["news", "missed", "2-0"],))
        core.session_restored("e2", "/", restored, 3.0)
        core.emit("news", ["missed"], offset="2-0")       # the same packet, live: not twice
        assert _sent(core.emit("news", ["live"], offset="3-0")) == []
        expected = ['2["news","missed","2-0"]', '2["news","live","3-0"]']
    else:
        core.emit("news", ["missed"], now=3.0)             # logged after the restore
        expected = ['2["news","missed","2"]']
    assert _sent(core.accept("e2"))[1:] == expected


# --- the Redis store: Node's format --------------------------------------------------------------

OPTIONS = RecoveryOptions(max_disconnection_duration=60000, max_log_packets=3)


@asyncio_test(timeout=20)
async def test_redis_store_keeps_sessions_and_the_log_in_the_streams_adapter_format(redis_url):  # noqa: F811
    sessions = RedisSessionStore.factory(redis_url, stream="t1", rng=random.Random(0))
    roomy = RecoveryOptions(max_disconnection_duration=60000, max_log_packets=10)
    store, other = sessions("/", roomy), sessions("/admin", roomy)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        first = await store.append(["news", "seen"], None, (), 0.0)
        await store.persist(Session("S", "P1", ("S", "blue"), {"user": "ada"}, 1.0))
        data = ["news", "a"]
        offset = await store.append(data, ["blue"], (), 2.0)
        assert data == ["news", "a", offset]                       # the offset: the stream id
        await other.append(["news", "elsewhere"], None, (), 2.0)   # another namespace
        await store.append(["news", b"\x01"], None, ["S"], 2.0)     # except it (and binary)
        # The session: base64 MessagePack {sid, pid, rooms, data}, PX the duration.
        value = await raw.get("sio:session:P1")
        assert msgpack.unpackb(base64.b64decode(value)) == {
            "sid": "S", "pid": "P1", "rooms": ["S", "blue"], "data": {"user": "ada"}}
        assert 0 < await raw.pttl("sio:session:P1") <= 60000
        # The entry: uid, nsp, type "3", data JSON {packet, opts} without the offset.
        (entry_id, fields), = await raw.xrange("t1", min=offset, max=offset)
        assert entry_id.decode() == offset
        assert fields[b"nsp"] == b"/" and fields[b"type"] == b"3" and len(fields[b"uid"]) == 6
        assert json.loads(fields[b"data"]) == {
            "packet": {"type": 2, "data": ["news", "a"], "nsp": "/"},
            "opts": {"rooms": ["blue"], "except": [], "flags": {}}}
        restored = await store.restore("P1", first, 3.0)
        assert restored.session.sid == "S" and restored.session.rooms == ("S", "blue")
        assert restored.session.data == {"user": "ada"}
        assert restored.missed == (["news", "a", offset],)
        assert await raw.exists("sio:session:P1") == 0               # used once
        assert await store.restore("P1", first, 3.0) is None
    finally:
        await raw.aclose()
        await sessions.close()


@asyncio_test(timeout=20)
async def test_redis_store_a_client_too_far_behind_or_expired_is_not_recovered(redis_url):  # noqa: F811
    sessions = RedisSessionStore.factory(redis_url, stream="t2")
    store = sessions("/", OPTIONS)                              # 3 entries at most
    short = sessions("/", RecoveryOptions(max_disconnection_duration=1))
    raw = aioredis.Redis.from_url(redis_url)
    try:
        first = await store.append(["news", 0], None, (), 0.0)
        await store.persist(Session("S", "P2", ("S",), None, 1.0))
        for index in range(1, 4):
            await store.append(["news", index], None, (), 2.0)
        assert await raw.xlen("t2") == 3                         # MAXLEN: `first` is gone
        assert await store.restore("P2", first, 3.0) is None    # no partial replay
        assert await store.restore("P2", "not-an-offset", 3.0) is None
        # Expiry: PX 1 ms - gone once Redis says so (no sleeping: wait for the key to go).
        await short.persist(Session("T", "P3", ("T",), None, 1.0))
        await until_async(lambda: raw.exists("sio:session:P3"), 0)
        last = await store.append(["news", 4], None, (), 4.0)
        assert await short.restore("P3", last, 5.0) is None
    finally:
        await raw.aclose()
        await sessions.close()


async def until_async(probe, expected, timeout: float = 5.0) -> None:
    import asyncio
    async with asyncio.timeout(timeout):
        while await probe() != expected:
            await asyncio.sleep(0.005)


# --- end to end ------------------------------------------------------------------------------------

def _client() -> tuple[AsyncClient, list]:
    client = AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.1,
                         rng=random.Random(2))
    events: list = []
    client.on("news", lambda text: events.append(text))
    return client, events


def _app(**options) -> Server:
    sio = Server(connection_state_recovery={"max_disconnection_duration": 60000},
                 rng=random.SystemRandom(), **options)

    @sio.event
    async def connect(sid, request, auth):
        await sio.save_session(sid, {"user": auth["user"]})
        await sio.enter_room(sid, "blue")

    return sio


@asyncio_test(timeout=20)
async def test_the_async_in_memory_store_recovers_like_the_default():
    sio = _app(session_store=AsyncInMemorySessionStore.factory())
    async with serve(sio) as server, Relay("127.0.0.1", server.port) as relay:
        client, events = _client()
        await client.connect(f"http://127.0.0.1:{relay.port}", transports=["websocket"],
                             auth={"user": "ada"})
        sid = client.sid
        await sio.emit("news", "before", to="blue")
        await until(lambda: events == ["before"])
        relay.cut()
        await until(lambda: not sio.core.is_connected(sid))
        await sio.emit("news", "missed-1", to="blue")
        await sio.emit("news", "missed-2")
        await sio.emit("news", "other room", to="red")
        await until(lambda: len(events) == 3, timeout=10)
        assert events == ["before", "missed-1", "missed-2"]
        assert client.recovered() and client.sid == sid and sio.recovered(sid)
        assert await sio.get_session(sid) == {"user": "ada"}
        await client.disconnect()


@pytest.mark.parametrize("how", ["RedisSessionStore", "the Redis adapter's"])
@asyncio_test(timeout=30)
async def test_a_new_server_on_the_same_redis_recovers_the_client_after_a_restart(
        redis_url, how):  # noqa: F811
    def make() -> Server:
        if how == "RedisSessionStore":
            return _app(session_store=RedisSessionStore.factory(redis_url))
        return _app(adapter_factory=RedisAdapter.factory(redis_url))

    server_a = make()
    async with serve(server_a) as server:
        port = server.port
        client, events = _client()
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"],
                             auth={"user": "ada"})
        sid = client.sid
        await server_a.emit("news", "before", to="blue")
        await until(lambda: events == ["before"])
    await until(lambda: not client.connected)   # server A is gone ("server shutting down")
    async with serve(make()) as other:          # another server of the cluster broadcasts
        await other.emit("news", "missed-1", to="blue")
        await other.emit("news", "other room", to="red")
        await other.emit("news", "missed-2")
    server_b = make()                           # a new process's server: nothing in memory
    async with serve(server_b, port=port):      # B listens where A did
        await until(lambda: len(events) == 3 and client.connected, timeout=15)
        assert events == ["before", "missed-1", "missed-2"]
        assert client.recovered() and client.sid == sid and server_b.recovered(sid)
        assert await server_b.get_session(sid) == {"user": "ada"}
        assert server_b.rooms(sid) == [sid, "blue"]
        await client.disconnect()
