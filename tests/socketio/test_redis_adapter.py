"""lablib.socketio.redis_adapter: two lablib servers, one cluster, on a real Redis.

Each test starts two Socket.IO servers in this process, each with its own RedisAdapter factory
(its own Redis connections and uid, as two processes would have), on lablib's embedded Redis
(or ``REDIS_URL``), and lablib clients on each.  Node in the same cluster is in
tests/interop/test_redis_cluster.py; separate processes in tests/cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from lablib.errors import AdapterError
from lablib.services import free_port
from lablib.services.redis import RedisServer
from lablib.socketio.redis_adapter import RedisAdapter
from lablib.socketio.server import Server
from lablib.socketio.server_cluster import AckTimeoutError
from tests.aio_support import asyncio_test, until
from tests.cluster_support import Peer
from tests.redis_support import redis_url  # noqa: F401 (a fixture)


@contextlib.asynccontextmanager
async def cluster(url: str, servers: int = 2, **options):
    """``servers`` lablib servers in one Redis cluster; clients join the rooms of their auth."""
    sios = []
    for index in range(servers):
        sio = Server(adapter_factory=RedisAdapter.factory(url, rng=random.Random(index)),
                     **options)

        @sio.event
        async def connect(sid, request, auth, sio=sio):
            for room in (auth or {}).get("rooms", []):
                sio.enter_room(sid, room)
            (await sio.get_session(sid))["server"] = sio.name

        sio.name = f"server{index}"
        await sio.start()
        sios.append(sio)
    clients: list[Peer] = []

    async def join(index: int, name: str, rooms=()):
        peer = Peer(name)
        await peer.client.connect(f"http://127.0.0.1:{sios[index].port}",
                                  transports=["websocket"], auth={"rooms": list(rooms)})
        clients.append(peer)
        return peer

    try:
        yield sios, join
    finally:
        for peer in clients:
            await peer.client.disconnect()
        for sio in sios:
            await sio.close()


@asyncio_test(timeout=30)
async def test_a_broadcast_reaches_the_room_on_both_servers(redis_url):  # noqa: F811
    async with cluster(redis_url) as (sios, join):
        a1 = await join(0, "a1", ["room1"])
        a2 = await join(0, "a2", ["room1"])
        b1 = await join(1, "b1", ["room1"])
        b2 = await join(1, "b2", ["room1"])
        b3 = await join(1, "b3", [])           # not in the room
        await sios[0].emit("news", {"n": 1}, to="room1", skip_sid=b2.sid)
        for peer in (a1, a2, b1):
            assert await peer.next() == ("news", {"n": 1})
        # b2 (excepted across servers) and b3 (not a member) get the next emit first.
        await sios[1].emit("all", b"\x00\x01")   # the whole namespace, binary, from server 1
        for peer in (a1, a2, b1, b2, b3):
            assert await peer.next() == ("all", b"\x00\x01")
        assert [adapter.publish_failures for adapter in
                (sios[0].core.adapter("/"), sios[1].core.adapter("/"))] == [0, 0]


@asyncio_test(timeout=30)
async def test_an_emit_to_a_sid_or_room_of_another_server_reaches_it(redis_url):  # noqa: F811
    async with cluster(redis_url) as (sios, join):
        b1 = await join(1, "b1", ["only-on-b"])
        await sios[0].emit("to-sid", 1, to=b1.sid)          # published on socket.io#/#<sid>#
        assert await b1.next() == ("to-sid", 1)
        await sios[0].emit("to-room", 2, to="only-on-b")    # no local member: not undelivered
        assert await b1.next() == ("to-room", 2)
        assert sios[0].undelivered == 0


@asyncio_test(timeout=30)
async def test_a_namespace_created_by_a_client_joins_the_cluster(redis_url):  # noqa: F811
    async with cluster(redis_url, namespaces="*") as (sios, join):
        peers = []
        for index in (0, 1):
            peer = Peer(f"p{index}")
            peer.client.on("*", peer._record, namespace="/dyn")
            await peer.client.connect(f"http://127.0.0.1:{sios[index].port}",
                                      transports=["websocket"], namespaces=["/dyn"])
            peers.append(peer)
        try:
            adapter = sios[0].core.adapter("/dyn")   # made on the CONNECT, started meanwhile
            await until(lambda: adapter._started and sios[1].core.adapter("/dyn")._started)
            assert await adapter.server_count() == 2
            await sios[0].emit("hi", namespace="/dyn")
            assert [await peer.next() for peer in peers] == [("hi",), ("hi",)]
        finally:
            for peer in peers:
                await peer.client.disconnect()


@asyncio_test(timeout=30)
async def test_fetch_sockets_sees_every_server(redis_url):  # noqa: F811
    async with cluster(redis_url) as (sios, join):
        a1 = await join(0, "a1", ["room1"])
        b1 = await join(1, "b1", ["room1", "room2"])
        await join(1, "b2", [])
        sockets = await sios[0].fetch_sockets("room1")
        assert [s.id for s in sockets] == [a1.sid, b1.sid]          # ours first
        remote = sockets[1]
        assert remote.rooms == [b1.sid, "room1", "room2"]
        assert remote.data == {"server": "server1"}
        assert remote.handshake["auth"] == {"rooms": ["room1", "room2"]}
        assert remote.handshake["query"]["EIO"] == "4"
        assert len(await sios[1].fetch_sockets()) == 3
        assert await sios[0].all_rooms() == {a1.sid, b1.sid, "room1", "room2",
                                             (await sios[1].fetch_sockets(skip_sid=[a1.sid,
                                                                                  b1.sid]))[0].id}


@asyncio_test(timeout=30)
async def test_emit_with_ack_gathers_every_ack_of_the_cluster(redis_url):  # noqa: F811
    async with cluster(redis_url) as (sios, join):
        await join(0, "a1", ["room1"])
        await join(1, "b1", ["room1"])
        await join(1, "b2", ["room1"])
        await join(1, "b3", [])
        responses = await sios[0].emit_with_ack("ask", "q1", to="room1", timeout=10)
        assert sorted(responses) == ["a1 got q1", "b1 got q1", "b2 got q1"]
        # emit(callback=): each recipient's ack, remote ones included.
        got: asyncio.Queue = asyncio.Queue()
        await sios[1].emit("ask", "q2", to="room1", callback=got.put_nowait)
        answers = sorted([await got.get() for _ in range(3)])
        assert answers == ["a1 got q2", "b1 got q2", "b2 got q2"]


@asyncio_test(timeout=30)
async def test_emit_with_ack_times_out_with_the_acks_that_came(redis_url):  # noqa: F811
    async with cluster(redis_url) as (sios, join):
        await join(0, "a1", ["room1"])
        silent = await join(1, "b1", ["room1"])
        answered = asyncio.Event()

        async def late(*args):   # answers once the emit has given up
            await answered.wait()
            return "too late"

        silent.client.on("ask", late)
        with pytest.raises(AckTimeoutError) as caught:
            await sios[0].emit_with_ack("ask", "q", to="room1", timeout=1.0)
        assert caught.value.responses == ["a1 got q"]
        answered.set()


@asyncio_test(timeout=30)
async def test_server_side_emit_both_ways_with_and_without_acks(redis_url):  # noqa: F811
    async with cluster(redis_url, servers=3) as (sios, join):
        heard: asyncio.Queue = asyncio.Queue()
        for sio in sios:
            @sio.on_server_side("hello")
            async def hello(*args, sio=sio):
                await heard.put((sio.name, args))
                return f"{sio.name} says hi"
        await sios[0].server_side_emit("hello", 1, {"two": 2})
        assert sorted([await heard.get(), await heard.get()]) == [
            ("server1", (1, {"two": 2})), ("server2", (1, {"two": 2}))]   # not to itself
        answers = await sios[2].server_side_emit_with_ack("hello")
        assert sorted(answers) == ["server0 says hi", "server1 says hi"]


@asyncio_test(timeout=30)
async def test_sockets_join_leave_and_disconnect_across_servers(redis_url):  # noqa: F811
    async with cluster(redis_url) as (sios, join):
        a1 = await join(0, "a1", ["room1"])
        b1 = await join(1, "b1", ["room1"])
        await sios[0].sockets_join("room2", to="room1")
        await until(lambda: sios[1].rooms(b1.sid) == [b1.sid, "room1", "room2"])
        assert sios[0].rooms(a1.sid) == [a1.sid, "room1", "room2"]
        await sios[1].sockets_leave(["room1"], to=a1.sid)
        await until(lambda: sios[0].rooms(a1.sid) == [a1.sid, "room2"])
        await sios[0].disconnect_sockets(to="room1")    # only b1 is still in room1
        await until(lambda: not b1.client.connected)
        assert a1.client.connected
        assert [s.id for s in await sios[1].fetch_sockets()] == [a1.sid]


@asyncio_test(timeout=30)
async def test_redis_down_at_start_is_a_clear_error():
    url = f"redis://127.0.0.1:{free_port()}"   # nothing listens there
    sio = Server(adapter_factory=RedisAdapter.factory(url))
    with pytest.raises(AdapterError) as caught:
        await sio.start()
    assert url in str(caught.value) and caught.value.url == url
    assert sio.eio._tcp_server is None    # nothing listens: the server did not start


@asyncio_test(timeout=60)
async def test_redis_restart_broadcasts_fail_loudly_then_the_adapter_reconnects(caplog):
    """Stop the embedded Redis under a running cluster, then start it on the same port."""
    server = RedisServer(use_env=False)
    await asyncio.to_thread(server.start)
    port = server.port
    try:
        async with cluster(server.url) as (sios, join):
            a1 = await join(0, "a1", ["room1"])
            b1 = await join(1, "b1", ["room1"])
            await asyncio.to_thread(server.stop)
            adapter = sios[0].core.adapter("/")
            with pytest.raises(AdapterError) as caught:
                await sios[0].emit("lost", to="room1")
            assert f"127.0.0.1:{port}" in str(caught.value)
            assert adapter.publish_failures == 1
            assert "not published to Redis" in caplog.text
            assert await a1.next() == ("lost",)            # the local half did go out

            restarted = RedisServer(use_env=False)
            await asyncio.to_thread(_start_on, restarted, port)
            server = restarted
            for sio in sios:   # each subscriber reconnected and resubscribed
                await until(lambda sio=sio: sio.core.adapter("/").connection.connected.is_set(),
                            timeout=30)
                assert sio.core.adapter("/").connection.reconnects == 1
            await sios[0].emit("back", to="room1")
            assert await b1.next() == ("back",)
            assert await a1.next() == ("back",)
    finally:
        await asyncio.to_thread(server.stop)


def _start_on(server: RedisServer, port: int) -> None:
    """Start ``server`` on ``port`` (the one its predecessor had)."""
    from lablib.services import ServiceProcess
    from lablib.services.redis import _ping, find_redis_server

    server.binary = find_redis_server()
    process = ServiceProcess(server._argv(port), name="redis-server")
    url = f"redis://{server.host}:{port}"
    process.wait_until(lambda: _ping(url))
    server.process, server.port, server.url = process, port, url


@asyncio_test(timeout=30)
async def test_in_memory_default_answers_the_cluster_api_locally():
    sio = Server()
    await sio.start()
    try:
        peer = Peer("p")
        await peer.client.connect(f"http://127.0.0.1:{sio.port}", transports=["websocket"])
        sio.enter_room(peer.sid, "room1")
        assert [s.id for s in await sio.fetch_sockets("room1")] == [peer.sid]
        assert await sio.all_rooms() == {peer.sid, "room1"}
        assert await sio.emit_with_ack("ask", "q", to="room1") == ["p got q"]
        assert await sio.server_side_emit_with_ack("x") == []   # no other server
        await sio.sockets_join("room2", to=peer.sid)
        assert sio.rooms(peer.sid) == [peer.sid, "room1", "room2"]
        await peer.client.disconnect()
    finally:
        await sio.close()
