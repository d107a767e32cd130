"""Helpers shared by the cluster tests (tests/cluster, tests/deploy, the Redis adapter's).

:class:`Peer` is a lablib client that records what a cluster sends it.  ``sio_client(kind)``
yields lablib's ``AsyncClient`` (``kind="lablib"``) or python-socketio's
(``kind="python-socketio"``), neither reconnecting.  python-socketio's gets an aiohttp session
whose cookie jar accepts cookies from IP addresses (aiohttp's default jar refuses them, so a
balancer's cookie on http://127.0.0.1:... would be dropped).
"""

from __future__ import annotations

import asyncio
import contextlib

from lablib.socketio.client import AsyncClient

CLIENTS = ["lablib", "python-socketio"]
UNKNOWN_SID = '{"code":1,"message":"Session ID unknown"}'


def connection_errors(kind: str) -> type[Exception]:
    if kind == "lablib":
        from lablib.socketio.client import ConnectionError as LablibConnectionError
        return LablibConnectionError
    import socketio
    return socketio.exceptions.ConnectionError


@contextlib.asynccontextmanager
async def sio_client(kind: str):
    if kind == "lablib":
        yield AsyncClient(reconnection=False)
        return
    import aiohttp
    import socketio
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield socketio.AsyncClient(reconnection=False, http_session=http)


async def echo_round_trip(client, url: str, transports=None, headers=None) -> dict:
    """Connect, ``call("echo")`` (ack) and wait for the ``echo`` event; return what was seen."""
    echoed: asyncio.Queue = asyncio.Queue()
    client.on("echo", echoed.put_nowait)
    await client.connect(url, transports=transports, headers=headers or {})
    try:
        ack = await client.call("echo", "hello", timeout=10)
        event = await asyncio.wait_for(echoed.get(), 10)
        who = await client.call("whoami", timeout=10)
        return {"ack": ack, "event": event, "transport": client.transport(), "pid": who["pid"]}
    finally:
        await client.disconnect()


class Peer:
    """A lablib Socket.IO client (not reconnecting) that queues every event it receives and
    answers ``ask`` with ``"<name> got <arg>"``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.client = AsyncClient(reconnection=False)
        self.events: asyncio.Queue = asyncio.Queue()
        self.client.on("*", self._record)
        self.client.on("ask", self._answer)

    async def _record(self, event, *args):
        await self.events.put((event, *args))

    async def _answer(self, *args):
        return f"{self.name} got {args[0]}"

    async def next(self):
        return await self.events.get()

    @property
    def sid(self) -> str:
        return self.client.get_sid()
