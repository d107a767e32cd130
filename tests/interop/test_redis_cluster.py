"""One cluster: a lablib server with RedisAdapter and a Node socket.io server with the official
@socket.io/redis-adapter 8.x, on a real Redis (embedded, or REDIS_URL).

The Node side is interop/node/redis_adapter_peer.js (its socket.io-client sockets answer "ask"
with "<name> got <arg>"); the lablib side runs in the test's event loop with lablib clients.
Every direction: broadcasts to a room, fetchSockets / fetch_sockets, emit-with-ack gathering
every client's ack, serverSideEmit (with and without acks), socketsJoin / disconnectSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from lablib.services.node import node_script
from lablib.socketio.redis_adapter import RedisAdapter
from lablib.socketio.server import Server
from tests.aio_support import asyncio_test, until
from tests.node_support import NodePeer, node_modules  # noqa: F401 (a fixture)
from tests.redis_support import redis_url  # noqa: F401 (a fixture)
from tests.cluster_support import Peer

pytestmark = [pytest.mark.interop, pytest.mark.node]


class Node:
    """The Node peer, awaited from the event loop (its reads block in a thread)."""

    def __init__(self, peer: NodePeer) -> None:
        self.peer = peer

    def send(self, **command) -> None:
        self.peer.send(**command)

    async def expect(self, predicate) -> dict:
        return await asyncio.to_thread(self.peer.expect, predicate)

    async def client(self, name: str, rooms=(), url: str | None = None) -> str:
        extra = {"url": url} if url else {}
        self.send(cmd="connectClient", name=name, rooms=list(rooms), **extra)
        return (await self.expect(lambda line: line.get("connected") == name))["sid"]


@contextlib.asynccontextmanager
async def mixed_cluster(url: str):
    """(lablib Server, lablib client factory, Node) in one Redis cluster."""
    sio = Server(adapter_factory=RedisAdapter.factory(url, rng=random.Random(7)))

    @sio.event
    async def connect(sid, request, auth):
        for room in (auth or {}).get("rooms", []):
            sio.enter_room(sid, room)
        (await sio.get_session(sid))["server"] = "lablib"

    await sio.start()
    peers: list[Peer] = []

    async def join(name: str, rooms=()):
        peer = Peer(name)
        await peer.client.connect(f"http://127.0.0.1:{sio.port}", transports=["websocket"],
                                  auth={"rooms": list(rooms)})
        peers.append(peer)
        return peer

    with node_script("redis_adapter_peer.js", url) as process:
        node = Node(NodePeer(process))
        try:
            node.ready = await node.expect(lambda line: line.get("ready"))
            # Both servers subscribed: each counts two on the request channel.
            assert await sio.core.adapter("/").server_count() == 2
            yield sio, join, node
        finally:
            for peer in peers:
                await peer.client.disconnect()
            node.send(cmd="exit")
            await sio.close()


@asyncio_test(timeout=60)
async def test_broadcasts_to_a_room_reach_the_clients_of_both(redis_url, node_modules):  # noqa: F811
    async with mixed_cluster(redis_url) as (sio, join, node):
        mine = await join("py1", ["room1"])
        await join("py2", [])
        await node.client("node1", ["room1"])
        await node.client("node2", ["room2"])
        # A Node socket.io-client on the lablib server, too.
        await node.client("node-on-lablib", ["room1"], url=f"http://127.0.0.1:{sio.port}")

        await sio.emit("from-lablib", {"n": 1}, to="room1")
        assert await mine.next() == ("from-lablib", {"n": 1})
        got = {(await node.expect(lambda line: "event" in line))["client"] for _ in range(2)}
        assert got == {"node1", "node-on-lablib"}

        node.send(cmd="broadcast", rooms=["room1"], event="from-node", args=["x", {"$bin": "01"}])
        assert await mine.next() == ("from-node", "x", b"\x01")
        got = {(await node.expect(lambda line: line.get("event") == "from-node"))["client"]
               for _ in range(2)}
        assert got == {"node1", "node-on-lablib"}


@asyncio_test(timeout=60)
async def test_fetch_sockets_both_ways(redis_url, node_modules):  # noqa: F811
    async with mixed_cluster(redis_url) as (sio, join, node):
        mine = await join("py1", ["room1"])
        theirs = await node.client("node1", ["room1"])
        await node.client("node2", [])

        sockets = await sio.fetch_sockets("room1")
        assert [s.id for s in sockets] == [mine.sid, theirs]
        assert sockets[1].rooms == ["room1", theirs]   # Node: middleware joins come first
        assert sockets[1].data == {"server": "node"}
        assert sockets[1].handshake["auth"] == {"rooms": ["room1"]}
        assert {"headers", "time", "address", "query", "auth"} <= set(sockets[1].handshake)

        node.send(cmd="fetchSockets", rooms=["room1"])
        fetched = (await node.expect(lambda line: "fetched" in line))["fetched"]
        assert {s["id"] for s in fetched} == {mine.sid, theirs}
        ours = [s for s in fetched if s["id"] == mine.sid][0]
        assert ours["rooms"] == [mine.sid, "room1"] and ours["data"] == {"server": "lablib"}
        assert ours["auth"] == {"rooms": ["room1"]}

        assert await sio.all_rooms() >= {mine.sid, theirs, "room1"}


@asyncio_test(timeout=60)
async def test_emit_with_ack_across_both_gathers_every_ack(redis_url, node_modules):  # noqa: F811
    async with mixed_cluster(redis_url) as (sio, join, node):
        await join("py1", ["room1"])
        await join("py2", ["room1"])
        await node.client("node1", ["room1"])
        await node.client("node2", ["room1"])
        await node.client("node3", [])

        responses = await sio.emit_with_ack("ask", "q1", to="room1", timeout=10)
        assert sorted(responses) == ["node1 got q1", "node2 got q1", "py1 got q1", "py2 got q1"]

        node.send(cmd="broadcastWithAck", rooms=["room1"], timeout=10000, event="ask",
                  args=["q2"])
        line = await node.expect(lambda line: "acks" in line)
        assert line["error_"] is None
        assert sorted(line["acks"]) == ["node1 got q2", "node2 got q2", "py1 got q2",
                                        "py2 got q2"]


@asyncio_test(timeout=60)
async def test_server_side_emit_both_ways(redis_url, node_modules):  # noqa: F811
    async with mixed_cluster(redis_url) as (sio, join, node):
        heard: asyncio.Queue = asyncio.Queue()

        @sio.on_server_side("hello-node")
        async def hello(*args):
            await heard.put(args)
            return "lablib says hi"

        await sio.server_side_emit("hello", 1, {"two": 2})
        line = await node.expect(lambda line: "serverSideEvent" in line)
        assert line == {"serverSideEvent": "hello", "args": [1, {"two": 2}]}
        assert await sio.server_side_emit_with_ack("hello") == ["node says hi"]

        node.send(cmd="serverSideEmit", event="hello-node", args=["x"])
        assert await heard.get() == ("x",)
        node.send(cmd="serverSideEmitWithAck", event="hello-node", args=["y"])
        assert (await node.expect(lambda line: "serverAcks" in line))["serverAcks"] == \
            ["lablib says hi"]
        assert await heard.get() == ("y",)


@asyncio_test(timeout=60)
async def test_sockets_join_and_disconnect_across_both(redis_url, node_modules):  # noqa: F811
    async with mixed_cluster(redis_url) as (sio, join, node):
        mine = await join("py1", ["room1"])
        theirs = await node.client("node1", ["room1"])
        await sio.sockets_join("room2", to="room1")
        assert await node.expect(lambda line: "joined" in line) == {"joined": "room2",
                                                                     "sid": theirs}
        assert sio.rooms(mine.sid) == [mine.sid, "room1", "room2"]

        node.send(cmd="socketsJoin", to=["room1"], rooms=["room3"])
        await until(lambda: "room3" in sio.rooms(mine.sid))

        await sio.disconnect_sockets(to="room3", skip_sid=mine.sid)
        line = await node.expect(lambda line: "disconnected" in line)
        assert line == {"client": "node1", "disconnected": "io server disconnect"}
        node.send(cmd="disconnectSockets", to=[mine.sid])
        await until(lambda: not mine.client.connected)
