"""python-socketio's AsyncRedisManager speaks its own protocol: it cannot join a Node/lablib cluster.

python-socketio (5.x) publishes every cluster message as JSON on ONE channel, ``socketio``
(its ``channel=`` option): ``{"method": "emit", "event", "data", "binary", "namespace", "room",
"skip_sid", "callback", "host_id"}`` (older releases pickled it).  The official adapter - and
lablib's RedisAdapter - publish MessagePack ``[uid, packet, opts]`` on ``socket.io#<nsp>#...``
channels.  Neither subscribes to the other's channels, so on one Redis the two clusters are
strangers: each broadcast reaches its own side only.  Redis says so itself: PUBLISH returns how
many subscribers got the message.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from lablib.socketio.redis_adapter import RedisAdapter
from lablib.socketio.server import Server
from tests.aio_support import aiohttp_site, asyncio_test, until
from tests.redis_support import redis_url  # noqa: F401 (a fixture)
from tests.cluster_support import Peer

socketio = pytest.importorskip("socketio")
pytestmark = pytest.mark.interop


async def _next_published(spy) -> dict:
    """The next PUBLISHed message (get_message returns None for a subscribe confirmation)."""
    async with asyncio.timeout(30):
        while True:
            message = await spy.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                return message


@asyncio_test(timeout=60)
async def test_python_socketio_and_lablib_clusters_do_not_see_each_other(redis_url):  # noqa: F811
    from aiohttp import web

    spy_client = aioredis.Redis.from_url(redis_url)
    spy = spy_client.pubsub()
    await spy.psubscribe("*")                     # every channel, to see what each side says

    psio = socketio.AsyncServer(async_mode="aiohttp",
                                client_manager=socketio.AsyncRedisManager(redis_url))

    @psio.event
    async def connect(sid, environ, auth):
        await psio.enter_room(sid, "room1")

    app = web.Application()
    psio.attach(app)
    sio = Server(adapter_factory=RedisAdapter.factory(redis_url))

    @sio.event
    async def connect(sid, request, auth):  # noqa: F811
        sio.enter_room(sid, "room1")

    await sio.start()
    ps_client = socketio.AsyncClient(reconnection=False)
    ps_heard: asyncio.Queue = asyncio.Queue()
    ps_client.on("*", lambda event, *args: ps_heard.put_nowait((event, *args)))
    lablib_peer = Peer("lablib")
    try:
        async with aiohttp_site(app) as port:
            await ps_client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
            await lablib_peer.client.connect(f"http://127.0.0.1:{sio.port}",
                                             transports=["websocket"])
            # python-socketio subscribes when its first client comes: one channel, "socketio".
            await until(lambda: psio.manager.thread is not None, timeout=30)
            await until_async(lambda: spy_client.pubsub_numsub("socketio"),
                              lambda value: value == [(b"socketio", 1)])
            assert await spy_client.pubsub_numsub("socket.io#/#", "socket.io-request#/#") == [
                (b"socket.io#/#", 0), (b"socket.io-request#/#", 1)]   # lablib's only
            assert await spy_client.pubsub_numpat() == 2   # lablib's socket.io#/#* and the spy's

            # python-socketio's broadcast: JSON on "socketio"; only python-socketio hears it.
            await psio.emit("from-psio", {"n": 1}, room="room1")
            message = await _next_published(spy)
            assert message["channel"] == b"socketio"
            body = json.loads(message["data"])
            assert body == {"method": "emit", "event": "from-psio", "data": [{"n": 1}],
                            "binary": False, "namespace": "/", "room": "room1",
                            "skip_sid": None, "callback": None,
                            "host_id": psio.manager.host_id}
            assert await ps_heard.get() == ("from-psio", {"n": 1})
            # PUBLISH counts receivers: the same bytes on "socketio" reach python-socketio and
            # the spy - no lablib (or Node) adapter listens there.  (python-socketio ignores
            # this copy: the host_id is its own.)
            assert await spy_client.publish("socketio", message["data"]) == 2
            assert (await _next_published(spy))["data"] == message["data"]   # the spy's copy

            # lablib's broadcast: MessagePack on the room's channel; only lablib hears it.
            await sio.emit("from-lablib", [1, 2], to="room1")
            message = await _next_published(spy)
            assert message["channel"] == b"socket.io#/#room1#"
            assert message["data"][:1] == b"\x93"            # [uid, packet, opts]
            assert await lablib_peer.next() == ("from-lablib", [1, 2])
            # lablib's subscription and the spy's: python-socketio does not listen there.
            assert await spy_client.publish(message["channel"], message["data"]) == 2

            # And the behaviour a user sees: each side's clients get their side's events only.
            # (Each server's own marker comes after anything it had delivered before it.)
            await psio.emit("marker", room="room1")
            await sio.emit("marker", to="room1")
            assert await ps_heard.get() == ("marker",)
            assert await lablib_peer.next() == ("marker",)
            assert ps_heard.empty() and lablib_peer.events.empty()
            await ps_client.disconnect()   # before aiohttp's clean-up waits for its socket
    finally:
        await ps_client.disconnect()
        await lablib_peer.client.disconnect()
        await sio.close()
        await spy.aclose()
        await spy_client.aclose()


async def until_async(get, check, timeout: float = 30.0):
    async with asyncio.timeout(timeout):
        while not check(await get()):
            await asyncio.sleep(0.01)
