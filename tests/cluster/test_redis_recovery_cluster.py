"""Recovery across processes: a client cut from one worker is recovered by the other.

Two real worker processes (``serve --redis URL --app lablib.cluster:recovery_app``), the relay's
balancer in front, and a relay in front of that to cut the client's connection and hold its
reconnection until the missed broadcasts are in the log (so they must come from the replay,
whatever the timing).
"""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from lablib.capture.relay import Balancer, Relay
from lablib.cluster import Cluster
from lablib.socketio.client import AsyncClient
from tests import aio_support
from tests.aio_support import until
from tests.redis_support import redis_url  # noqa: F401 (a fixture)

asyncio_test = aio_support.asyncio_test(timeout=90)


@asyncio_test
async def test_a_client_whose_reconnect_lands_on_the_other_worker_is_recovered(redis_url):  # noqa: F811
    raw = aioredis.Redis.from_url(redis_url)
    async with Cluster(2, app="lablib.cluster:recovery_app", redis_url=redis_url) as cluster, \
            Balancer(cluster.targets, "round-robin") as lb, \
            Relay("127.0.0.1", lb.port) as relay:
        client = AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.1,
                             rng=random.Random(1))
        other = AsyncClient(reconnection=False)
        heard: list = []
        client.on("broadcast", lambda data: heard.append(data))
        try:
            await client.connect(f"http://127.0.0.1:{relay.port}", transports=["websocket"])
            await other.connect(cluster.urls[1], transports=["websocket"])
            sid, pid = client.sid, client.core.pid()
            assert (await client.call("whoami", timeout=10))["port"] == cluster.ports[0]
            await other.call("broadcast", "before", timeout=10)
            await until(lambda: heard == ["before"], timeout=10)

            relay.stall("c2s")   # the reconnection waits here...
            relay.cut()          # ...after worker 0 lost the client: it keeps the session
            async with asyncio.timeout(30):
                while not await raw.exists(f"sio:session:{pid}"):
                    await asyncio.sleep(0.01)
            await other.call("broadcast", "missed-1", timeout=10)   # acked: logged and sent
            await other.call("broadcast", "missed-2", timeout=10)
            lb.targets[:] = [cluster.targets[1]] * 2   # worker 0 drained: new requests to 1
            relay.resume()

            await until(lambda: client.connected and len(heard) == 3, timeout=30)
            assert heard == ["before", "missed-1", "missed-2"]
            assert client.recovered() and client.sid == sid
            assert (await client.call("whoami", timeout=10))["port"] == cluster.ports[1]
        finally:
            await client.disconnect()
            await other.disconnect()
            await raw.aclose()
