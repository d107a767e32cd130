"""Recovery through Redis between lablib and Node's @socket.io/redis-streams-adapter.

lablib's :class:`~lablib.socketio.redis_recovery.RedisSessionStore` keeps sessions and the
packet log in that adapter's format, so a session kept by one side is recovered by the other:

* a lablib client on a Node server (streams adapter, ``connectionStateRecovery``) is cut; the
  Node server keeps the session and logs the broadcasts it sends meanwhile; the reconnection
  lands on a lablib server on the same Redis - recovered, the missed broadcasts in order;
* the other way round: kept and logged by lablib, restored by the Node server.

The client goes through a relay (to cut it and hold its reconnection until the broadcasts are
in the stream) and the relay's balancer (whose target is switched to the other server).
Script: interop/node/recovery_server.js with a Redis URL.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
import redis.asyncio as aioredis

from lablib.capture.relay import Balancer, Relay
from lablib.services.node import node_script
from lablib.socketio.client import AsyncClient
from lablib.socketio.redis_recovery import RedisSessionStore
from lablib.socketio.server import Server, serve
from tests.aio_support import asyncio_test, until
from tests.interop.test_recovery import GUARD, NodePeer
from tests.node_support import node_modules  # noqa: F401 (a fixture)
from tests.redis_support import redis_url  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.interop, pytest.mark.node]

NODE_OPTIONS = json.dumps({"maxDisconnectionDuration": 60000, "skipMiddlewares": True})


def _lablib_server(redis_url: str) -> Server:
    sio = Server(connection_state_recovery={"max_disconnection_duration": 60000},
                 session_store=RedisSessionStore.factory(redis_url))

    @sio.event
    async def connect(sid, request, auth):
        await sio.enter_room(sid, "blue")   # as the Node script does for a new socket

    return sio


def _client() -> tuple[AsyncClient, list]:
    client = AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.1,
                         rng=random.Random(7))
    heard: list = []
    client.on("news", lambda text: heard.append(text))
    return client, heard


async def _wait_for(probe) -> None:
    async with asyncio.timeout(GUARD):
        while not await probe():
            await asyncio.sleep(0.01)


async def _logged(raw: aioredis.Redis, *texts: str) -> bool:
    entries = await raw.xrange("socket.io")
    logged = b"".join(fields.get(b"data", b"") for _, fields in entries)
    return all(json.dumps(text).encode() in logged for text in texts)


@asyncio_test(timeout=60)
async def test_a_session_kept_by_node_is_recovered_by_lablib(node_modules, redis_url):  # noqa: F811
    raw = aioredis.Redis.from_url(redis_url)
    sio = _lablib_server(redis_url)
    with node_script("recovery_server.js", NODE_OPTIONS, redis_url) as process:
        node = NodePeer(process)
        ready = await node.expect(lambda line: "ready" in line)
        async with serve(sio) as server, \
                Balancer([("127.0.0.1", ready["port"])]) as lb, \
                Relay("127.0.0.1", lb.port) as relay:
            client, heard = _client()
            try:
                await client.connect(f"http://127.0.0.1:{relay.port}", transports=["websocket"])
                sid, pid = client.sid, client.core.pid()
                await node.expect(lambda line: line.get("connection") == sid)
                node.send(cmd="broadcast", event="news", args=["before"], rooms=["blue"])
                await until(lambda: heard == ["before"], timeout=GUARD)
                relay.stall("c2s")
                relay.cut()
                await node.expect(lambda line: line.get("disconnect") == sid)
                await _wait_for(lambda: raw.exists(f"sio:session:{pid}"))
                node.send(cmd="broadcast", event="news", args=["missed-1"], rooms=["blue"])
                node.send(cmd="broadcast", event="news", args=["elsewhere"], rooms=["red"])
                node.send(cmd="broadcast", event="news", args=["missed-2"], rooms=[])
                await _wait_for(lambda: _logged(raw, "missed-1", "elsewhere", "missed-2"))
                lb.targets[:] = [("127.0.0.1", server.port)]   # the reconnection: to lablib
                relay.resume()
                await until(lambda: client.connected and len(heard) == 3, timeout=GUARD)
                assert heard == ["before", "missed-1", "missed-2"]
                assert client.recovered() and client.sid == sid and sio.recovered(sid)
                assert sio.rooms(sid) == [sid, "blue"]
            finally:
                await client.disconnect()
                node.send(cmd="exit")
    await raw.aclose()


@asyncio_test(timeout=60)
async def test_a_session_kept_by_lablib_is_recovered_by_node(node_modules, redis_url):  # noqa: F811
    raw = aioredis.Redis.from_url(redis_url)
    sio = _lablib_server(redis_url)
    with node_script("recovery_server.js", NODE_OPTIONS, redis_url) as process:
        node = NodePeer(process)
        ready = await node.expect(lambda line: "ready" in line)
        async with serve(sio) as server, \
                Balancer([("127.0.0.1", server.port)]) as lb, \
                Relay("127.0.0.1", lb.port) as relay:
            client, heard = _client()
            try:
                await client.connect(f"http://127.0.0.1:{relay.port}", transports=["websocket"])
                sid, pid = client.sid, client.core.pid()
                await sio.emit("news", "before", to="blue")
                await until(lambda: heard == ["before"], timeout=GUARD)
                relay.stall("c2s")
                relay.cut()
                await _wait_for(lambda: raw.exists(f"sio:session:{pid}"))
                await sio.emit("news", "missed-1", to="blue")
                await sio.emit("news", "elsewhere", to="red")
                await sio.emit("news", "missed-2")
                lb.targets[:] = [("127.0.0.1", ready["port"])]   # the reconnection: to Node
                relay.resume()
                again = await node.expect(lambda line: "connection" in line)
                assert again == {"connection": sid, "recovered": True,
                                 "rooms": [sid, "blue"]}
                await until(lambda: len(heard) == 3, timeout=GUARD)
                assert heard == ["before", "missed-1", "missed-2"]
                assert client.recovered() and client.sid == sid
            finally:
                await client.disconnect()
                node.send(cmd="exit")
    await raw.aclose()
