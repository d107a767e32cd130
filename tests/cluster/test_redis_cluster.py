"""Worker processes sharing broadcasts through the Redis adapter (``serve --redis URL``).

Without an adapter a worker's broadcast reaches its own clients only; with
``Cluster(2, redis_url=...)`` every client of every worker hears it (real processes, real Redis).
"""

from __future__ import annotations

import asyncio
import contextlib

from lablib.cluster import Cluster
from tests import aio_support
from tests.cluster_support import sio_client
from tests.redis_support import redis_url  # noqa: F401 (a fixture)

asyncio_test = aio_support.asyncio_test(timeout=90)


async def _broadcast_heard_by(cluster: Cluster, expected: int) -> list[tuple[int, object]]:
    """One client per worker; the first asks its worker to broadcast; who heard it?

    Waits for ``expected`` deliveries; then lets each worker answer an echo, so a copy that
    its worker had already written would have arrived (a worker's events to one client come
    in order) - how the test without an adapter sees that the others heard nothing.
    """
    async with contextlib.AsyncExitStack() as stack:
        clients, heard = [], asyncio.Queue()
        for url in cluster.urls:
            client = await stack.enter_async_context(sio_client("lablib"))
            client.on("broadcast", lambda data, client=client: heard.put_nowait(
                (clients.index(client), data)))
            await client.connect(url, transports=["websocket"])
            stack.push_async_callback(client.disconnect)
            clients.append(client)
        await clients[0].call("broadcast", "hi", timeout=10)   # the ack: the emit is done
        got = [await asyncio.wait_for(heard.get(), 30) for _ in range(expected)]
        for client in clients:
            await client.call("echo", "sync", timeout=10)
        return sorted(got + [heard.get_nowait() for _ in range(heard.qsize())])


@asyncio_test
async def test_without_an_adapter_a_broadcast_stays_in_its_worker():
    async with Cluster(2) as cluster:
        assert await _broadcast_heard_by(cluster, 1) == [(0, "hi")]


@asyncio_test
async def test_two_workers_with_the_redis_adapter_share_a_broadcast(redis_url):  # noqa: F811
    async with Cluster(2, redis_url=redis_url) as cluster:
        assert await _broadcast_heard_by(cluster, 2) == [(0, "hi"), (1, "hi")]
