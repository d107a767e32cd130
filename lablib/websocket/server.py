"""asyncio WebSocket server: ``async with serve(handler, "127.0.0.1", 0) as server: server.port``.

For each TCP connection the event loop creates a :class:`ServerConnection` (an asyncio
protocol, see :mod:`.aio`) that feeds the request into the sans-I/O handshake; a task per
connection waits for the outcome (with a timeout), answers 101 or the HTTP error, then runs
``handler(ws)``.  When the handler returns the connection is closed with 1000; if it raises,
with 1011 (the traceback goes to the log, never to the peer).  Shutting the server down closes
every open connection with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Awaitable, Callable, Sequence

from ..errors import ConnectionClosed
from ..http import Request
from .aio import WebSocket
from .connection import Connection, Role, WebSocketState
from .events import Rejected, RequestReceived
from .frames import CloseCode
from .deflate import DeflateOptions, compression_options
from .handshake import ServerHandshake

logger = logging.getLogger("lablib.websocket.server")

__all__ = ["serve", "Server", "ServerConnection"]


class ServerConnection(WebSocket):
    """The server's side of an open connection; ``request`` is the client's handshake."""

    request: Request

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def origin(self) -> str | None:
        return self.request.headers.get("Origin")


Handler = Callable[[ServerConnection], Awaitable[None]]


class Server:
    """A listening server; ``port`` is the port the OS chose when you asked for 0."""

    def __init__(self, handler: Handler, host: str, port: int, *,
                 subprotocols: Sequence[str] = (), origins: Sequence[str | None] | None = None,
                 max_size: int | None = 1 << 20, max_queue: int = 16,
                 ping_interval: float | None = 20, ping_timeout: float | None = 20,
                 close_timeout: float = 10, open_timeout: float | None = 10,
                 max_request_size: int = 16 * 1024, rng: random.Random | None = None,
                 compression: str | DeflateOptions | None = None) -> None:
        self.handler = handler
        self.compression = compression_options(compression, client=False)
        self.host, self.requested_port = host, port
        self.subprotocols, self.origins = list(subprotocols), origins
        self.max_size, self.max_request_size = max_size, max_request_size
        self.open_timeout = open_timeout
        self.rng = rng
        self.options = dict(max_queue=max_queue, ping_interval=ping_interval,
                            ping_timeout=ping_timeout, close_timeout=close_timeout)
        self.connections: set[ServerConnection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.base_events.Server | None = None
        self._port: int | None = None
        self._closing = False  # close() was called: no new sessions start

    async def start(self) -> "Server":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_connection, self.host,
                                                self.requested_port)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def sockets(self):
        return self._server.sockets if self._server else ()

    @property
    def port(self) -> int:
        """The listening port (still readable after close(), e.g. for a log line)."""
        if self._port is None:
            raise RuntimeError("the server is not started: await serve(...) first")
        return self._port

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.close()
        await self.wait_closed()

    def close(self, close_connections: bool = True) -> None:
        """Stop listening; close open connections with 1001 unless told not to.

        A handshake still in flight is refused with 503: no session starts after close().
        """
        self._closing = True
        if self._server is not None:
            self._server.close()
        if close_connections:
            for ws in list(self.connections):
                self._spawn(ws.close(CloseCode.GOING_AWAY, "server shutting down"))

    async def wait_closed(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _new_connection(self) -> ServerConnection:
        """The protocol factory: asyncio calls it for each accepted TCP connection."""
        handshake = ServerHandshake(subprotocols=self.subprotocols, origins=self.origins,
                                    max_request_size=self.max_request_size,
                                    compression=self.compression)
        conn = Connection(Role.SERVER, handshake=handshake, max_message_size=self.max_size,
                          rng=self.rng)
        ws = ServerConnection(conn, rng=self.rng, **self.options)
        self._spawn(self._handle_connection(ws))
        return ws

    async def _handle_connection(self, ws: ServerConnection) -> None:
        conn = ws.connection
        try:
            outcome = await asyncio.wait_for(ws.handshake_done, self.open_timeout)
        except asyncio.TimeoutError:
            ws._abort()
            return
        if isinstance(outcome, Rejected):  # the HTTP error answer is already written
            logger.info("handshake refused: %s", outcome.error)
            ws.close_lingering()  # the peer may still be sending: let the answer arrive
            return
        if conn.state is not WebSocketState.CONNECTING:  # TCP ended right behind the request
            return
        if self._closing:  # the server was shut down while this handshake was in flight
            ws.transport.write(conn.reject(503, "server shutting down"))
            ws.close_lingering()
            return
        assert isinstance(outcome, RequestReceived)
        ws.request = outcome.request
        ws.transport.write(conn.accept())
        ws.start()
        self.connections.add(ws)
        try:
            await self.handler(ws)
        except ConnectionClosed as exc:
            if ws.state is WebSocketState.OPEN:  # not this connection's close (another one's): a bug
                logger.error("connection handler failed", exc_info=exc)
                await ws.close(CloseCode.INTERNAL_ERROR, "internal error")
            else:  # the peer went away while the handler was talking to it: not an error
                await ws.close()  # a no-op but for waiting until TCP is closed
        except Exception:
            logger.exception("connection handler failed")
            await ws.close(CloseCode.INTERNAL_ERROR, "internal error")
        else:
            await ws.close()
        finally:
            self.connections.discard(ws)


class serve:
    """Start a server: ``server = await serve(...)`` or ``async with serve(...) as server``.

    Every option is a keyword argument; the defaults are the safe ones:

    - ``subprotocols``: the subprotocols we speak, in order of preference (none by default);
    - ``origins``: the ``Origin`` values accepted (``None`` in the list: requests without
      one); ``None`` (the default) accepts every origin;
    - ``max_size``: the largest message accepted, all fragments together (1 MiB; ``None``:
      no limit); a bigger one closes the connection with 1009;
    - ``max_queue``: messages received and not yet taken by ``recv()`` before reading pauses;
    - ``ping_interval``/``ping_timeout``: a keepalive ping every 20 s, closing with 1011 if
      its pong is not back within 20 s (``None``: off);
    - ``close_timeout``: how long the closing handshake may take (10 s);
    - ``open_timeout``: how long the opening handshake may take (10 s; ``None``: no limit);
    - ``max_request_size``: the largest handshake request, in bytes (16 KiB; more is 431);
    - ``rng``: a seeded ``random.Random`` makes every random choice reproducible;
    - ``compression``: ``None`` (the default) declines every compression offer; ``"deflate"``
      accepts permessage-deflate (RFC 7692) with ``websockets``' server settings (both
      windows at most 2**12 bytes, zlib ``memLevel=5``); a
      :class:`~lablib.websocket.deflate.DeflateOptions` chooses every parameter.  Off by
      default, like the servers of Node's ``ws`` and ``engine.io``/``socket.io``
      (``perMessageDeflate: false``); ``websockets``' server enables it by default.  A
      compressor and a decompressor cost each connection memory (zlib's state, up to a few
      hundred KiB with 2**15 windows), and compressing secrets beside attacker-chosen text
      leaks them (CRIME; RFC 7692's security considerations): turn it on where the traffic
      is large and repetitive.
      ``max_size`` bounds a message after inflating too (a decompression bomb gets 1009).
    """

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *,
                 subprotocols: Sequence[str] = (), origins: Sequence[str | None] | None = None,
                 max_size: int | None = 1 << 20, max_queue: int = 16,
                 ping_interval: float | None = 20, ping_timeout: float | None = 20,
                 close_timeout: float = 10, open_timeout: float | None = 10,
                 max_request_size: int = 16 * 1024, rng: random.Random | None = None,
                 compression: str | DeflateOptions | None = None) -> None:
        self._server = Server(handler, host, port, subprotocols=subprotocols, origins=origins,
                              max_size=max_size, max_queue=max_queue,
                              ping_interval=ping_interval, ping_timeout=ping_timeout,
                              close_timeout=close_timeout, open_timeout=open_timeout,
                              max_request_size=max_request_size, rng=rng,
                              compression=compression)

    def __await__(self):
        return self._server.start().__await__()

    async def __aenter__(self) -> Server:
        return await self._server.start()

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()
        await self._server.wait_closed()
