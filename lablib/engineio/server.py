"""The asyncio Engine.IO v4 server: sockets, HTTP and timers around the sans-I/O core.

:class:`~lablib.engineio.server_core.EngineServerCore` decides which request gets which answer,
and :class:`~lablib.engineio.server_session.ServerSession` what a session does next; this driver
only moves bytes and time.  It reads HTTP requests with h11 (:class:`lablib.http.RequestParser`),
hands each one to the core and writes the answer, runs the sessions' timers, hands a connection
that upgrades over to lablib's WebSocket driver (:class:`lablib.websocket.aio.WebSocket`), and
calls the application's ``connect``, ``message`` and ``disconnect`` handlers::

    server = Server(ping_interval=25000, ping_timeout=20000)

    @server.on("message")
    async def echo(sid, data):
        await server.send(sid, data)

    async with serve(server, "127.0.0.1", 0) as srv:
        print(srv.port)

How a long-polling request and an upgrade go through this driver, when its timer wakes up, its
limits and its lingering close are told in ``docs/architecture.md``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import mimetypes
import os
import pathlib
import random
import urllib.parse
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

from .._timers import Timers
from ..errors import ConnectionClosed, EngineIOError, HandshakeError
from ..http import NEED_DATA, Request, RequestParser, Response, error_response, format_response
from ..websocket.aio import LINGER_MAX_BYTES, WebSocket, shared_read_buffer
from ..websocket.connection import Connection, Role
from ..websocket.events import Rejected
from ..websocket.frames import CloseCode
from ..websocket.handshake import ServerHandshake
from .packets import Packet, encode_packet
from .server_core import AcceptWebSocket, EngineServerCore, HTTPReply, RequestResult, plain_reply
from ..events import Action, Output
from .events import AnswerPoll, CloseWebSocket, HoldPoll, MessageReceived, SendWebSocket, SessionClosed
from .server_session import ServerSession

__all__ = ["Server", "serve"]

logger = logging.getLogger(__name__)

#: an HTTP connection stops reading while this many bytes wait for the request parser
MAX_UNREAD = 128 * 1024
#: a request handler of ``routes``: gets the request, returns the Response (or None: 404)
RouteHandler = Callable[[Request], "Response | None | Awaitable[Response | None]"]
EVENTS = ("connect", "message", "disconnect")


# --- what the driver keeps per session and per TCP connection ----------------------------------

@dataclass(eq=False)
class _Link:
    """What ties one session to the I/O currently carrying it."""

    session: ServerSession
    request: Request | None = None               #: the request that opened the session
    held_request: Request | None = None          #: the GET waiting for packets, if any
    held_reply: asyncio.Future | None = None     #: resolved with its HTTPReply
    websocket: WebSocket | None = None           #: the session's WebSocket (probing or upgraded)
    #: packets for the WebSocket while its 101 is not written yet (the connect handler runs)
    early: list[Packet] | None = None
    connected: bool = False                      #: the connect handler accepted the session
    posting: bool = False                        #: a POST's messages are being handled
    #: bytes of the messages sent since the session's buffer was last handed to a transport
    #: (what a polling client has not fetched yet; see Server.send)
    queued_bytes: int = 0


class _TCPConnection(asyncio.BufferedProtocol):
    """One accepted TCP connection, the asyncio protocol that collects its bytes for
    :meth:`read`; a task per connection (:meth:`Server._serve`) reads the requests from it
    and writes the answers.

    The event loop reads into the buffer all connections of the loop share (see
    :mod:`lablib.websocket.aio`), and the bytes are copied out at once.  Reading stops while
    :data:`MAX_UNREAD` bytes wait (TCP flow control then bounds what a client can push at us).
    A WebSocket request hands the connection over to lablib's WebSocket driver
    (:meth:`hand_over`).
    """

    def __init__(self, server: "Server") -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._read_buffer = shared_read_buffer(self._loop)
        self._received = bytearray()
        self._eof = False
        self._error: Exception | None = None
        self._reading_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.websocket: WebSocket | None = None  #: the WebSocket it was handed over to
        self.idle = True   #: waiting for the next request (safe to close at shutdown)
        self.task: asyncio.Task | None = None

    # --- the event loop calls these

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.task = self._loop.create_task(self._server._serve(self))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._received += self._read_buffer[:nbytes]
        if len(self._received) >= MAX_UNREAD and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # keep our sending side open: the answer may still have to go out

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof, self._error = True, exc
        self._wake_reader()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake_reader(self) -> None:
        if self._read_waiter is not None and not self._read_waiter.done():
            self._read_waiter.set_result(None)

    # --- the connection's task calls these

    async def read(self) -> bytes:
        """The bytes received since the last read (waiting for some); ``b""`` at EOF."""
        if not self._received and not self._eof:
            self._read_waiter = self._loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if not self._received and self._error is not None:
            raise ConnectionResetError(str(self._error))
        data = bytes(self._received)
        self._received.clear()
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the client does not read what we wrote (the transport paused writing)."""
        if self.websocket is not None:
            return
        if self._lost.done():
            raise ConnectionResetError("connection lost")
        if self._writing_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
            if self._lost.done():
                raise ConnectionResetError("connection lost")

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def write_eof(self) -> None:
        self.transport.write_eof()

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        if self.websocket is not None:
            await self.websocket.wait_closed()
        else:
            await asyncio.shield(self._lost)

    def hand_over(self, websocket: WebSocket, leftover: bytes) -> None:
        """The 101 is written: ``websocket`` takes the TCP connection over, with the bytes that
        arrived after the request (``leftover``, from the parser, then what :meth:`read`
        has not returned yet)."""
        data = leftover + bytes(self._received)
        self._received.clear()
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        self.websocket = websocket
        websocket.adopt(self.transport, data)


# --- the server ---------------------------------------------------------------------------------

class Server:
    """An Engine.IO v4 server for asyncio.

    Protocol settings are the core's (milliseconds, as on the wire): ``path``,
    ``ping_interval``, ``ping_timeout``, ``max_payload``, ``upgrade_timeout``, ``transports``,
    ``allow_upgrades``, ``cors_allowed_origins``, ``cors_credentials``, ``allow_request``,
    ``max_buffered_packets``, ``rng`` (sids come from :mod:`secrets` unless a seeded
    ``random.Random`` is given, for reproducible notebooks and tests).  Driver limits are
    seconds or bytes: ``max_request_size`` (request line and header fields),
    ``request_timeout`` (a connection must deliver a whole request within it, idle
    keep-alive connections included), ``close_timeout`` (WebSocket closing handshake, and how
    long shutdown waits for clients to collect their close packet).

    Secure defaults: sids come from :mod:`secrets` (``rng`` only for reproducible notebooks);
    ``cors_allowed_origins=None`` is same-origin - a browser page of another site gets 403
    ``{"code":4,"message":"Forbidden"}`` on the WebSocket upgrade and on polling, a request
    without ``Origin`` (not a browser) is accepted, ``"*"`` or a list opens it; bodies and
    WebSocket messages are bounded by ``max_payload`` (a larger declared Content-Length is
    refused with 413 before the body is read).

    Other HTTP routes on the same port: ``routes`` maps an exact path to a handler that gets
    the :class:`lablib.http.Request` and returns a :class:`lablib.http.Response` (plain or
    coroutine function; None is 404), e.g. a health check; ``static_dir`` serves the files
    of a directory for GET and HEAD (``/`` is its ``index.html``), e.g. a chapter's browser
    page.  :meth:`mount` adds another Engine.IO endpoint (another ``path``) on the same port.
    :meth:`transport` and :meth:`request` tell the transport and the opening request of a
    connected client.

    ``http_compression``/``compression_threshold``: polling answers of at least 1024 bytes
    are gzip- or deflate-encoded when the client's ``Accept-Encoding`` allows it (on by
    default, as in the Node server and python-engineio; see the core).

    Handlers (plain functions or coroutines), like python-engineio's ``AsyncServer``:
    ``connect(sid, request)`` - return ``False`` (or raise) to refuse the handshake with
    403 code 4; ``message(sid, data)`` - ``str`` or ``bytes``; ``disconnect(sid, reason)``.
    Handlers of one session run in order, awaited by the task that received the packets.
    """

    def __init__(self, *, path: str = "/engine.io/", ping_interval: int = 25000,
                 ping_timeout: int = 20000, max_payload: int = 1_000_000,
                 upgrade_timeout: int = 10000, transports: Sequence[str] = ("polling", "websocket"),
                 allow_upgrades: bool = True, cors_allowed_origins: str | Sequence[str] | None = None,
                 cors_credentials: bool = True,
                 allow_request: Callable[[Request], bool | str | None] | None = None,
                 max_buffered_packets: int = 10_000, rng: random.Random | None = None,
                 max_request_size: int = 16 * 1024, request_timeout: float = 60.0,
                 close_timeout: float = 5.0, max_write_buffer: int = 4 * 1024 * 1024,
                 routes: Mapping[str, RouteHandler] | None = None,
                 static_dir: str | os.PathLike[str] | None = None,
                 http_compression: bool = True, compression_threshold: int = 1024) -> None:
        self.core = EngineServerCore(
            path=path, ping_interval=ping_interval, ping_timeout=ping_timeout,
            max_payload=max_payload, upgrade_timeout=upgrade_timeout, transports=transports,
            allow_upgrades=allow_upgrades, cors_allowed_origins=cors_allowed_origins,
            cors_credentials=cors_credentials, allow_request=allow_request,
            max_buffered_packets=max_buffered_packets, rng=rng,
            http_compression=http_compression, compression_threshold=compression_threshold)
        self.max_request_size = max_request_size
        self.request_timeout = request_timeout
        self.close_timeout = close_timeout
        self.max_write_buffer = max_write_buffer
        self.routes: dict[str, RouteHandler] = dict(routes or {})
        self.static_dir = pathlib.Path(static_dir).resolve() if static_dir is not None else None
        self.handlers: dict[str, Callable[..., Any]] = {}
        self._mounted: list[Server] = []   #: other Engine.IO endpoints served on our port
        self._links: dict[str, _Link] = {}
        self._connections: set[_TCPConnection] = set()
        self._tcp_server: asyncio.Server | None = None
        self._timer_task: asyncio.Task | None = None
        self._timers: Timers | None = None
        self._closing = False
        self._closed: asyncio.Event | None = None

    # --- the application's API -------------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None):
        """Register a handler: ``server.on("message", f)`` or ``@server.on("message")``."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; expected one of {EVENTS}")

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.handlers[event] = function
            return function

        return register(handler) if handler is not None else register

    @property
    def sessions(self) -> dict[str, ServerSession]:
        """The live sessions, sid -> :class:`ServerSession` (state, transport, ...)."""
        return self.core.sessions

    def transport(self, sid: str) -> str:
        """The transport session ``sid`` runs on now: ``"polling"`` or ``"websocket"`` (it
        becomes ``"websocket"`` when the upgrade completes).  KeyError for an unknown sid."""
        return self.core.sessions[sid].transport.value

    def request(self, sid: str) -> Request:
        """The HTTP request that opened session ``sid`` (path, query, header fields: e.g. a
        token in the query, a cookie).  KeyError for an unknown sid."""
        request = self._links[sid].request
        if request is None:
            raise KeyError(sid)
        return request

    def mount(self, other: "Server") -> "Server":
        """Serve the Engine.IO server ``other`` (another ``path``) on this server's port too.

        Requests go to the server whose path they are under; ``other`` keeps its own sessions,
        handlers and settings.  Start and close only this one: it starts and closes ``other``.
        """
        paths = {server.core.path for server in (self, *self._mounted)}
        if other is self or other.core.path in paths:
            raise ValueError(f"an endpoint already serves {other.core.path!r}")
        self._mounted.append(other)
        return other

    @property
    def port(self) -> int:
        assert self._tcp_server is not None, "the server is not started"
        return self._tcp_server.sockets[0].getsockname()[1]

    async def send(self, sid: str, data: str | bytes, *, wait: bool = True) -> None:
        """Send a message; like python-engineio, an unknown or closed sid is ignored (logged).

        ``wait=True``: over a WebSocket, wait while the client does not read what we wrote
        (backpressure: a client that never reads stalls its sender until the heartbeat drops
        it).  ``wait=False`` (a broadcast, which must not wait for its slowest member): never
        wait; what the client has not taken yet - the WebSocket's write buffer, or the
        messages a polling client has not fetched - may grow to ``max_write_buffer`` bytes
        (plus the message that crosses it); a client that still has more than that waiting
        when the next message comes is disconnected instead ("transport error", the cause
        logged as a warning) and its buffer freed.

        Text with a ``\x1e`` (the polling payload's separator) raises LocalProtocolError while
        the session is on polling.
        """
        link = self._links.get(sid)
        if link is None:
            logger.warning("send to an unknown session %s: dropped", sid)
            return
        websocket = link.websocket
        if not wait:
            waiting = link.queued_bytes
            if websocket is not None and websocket.transport is not None:
                waiting += websocket.transport.get_write_buffer_size()
            if waiting > self.max_write_buffer:
                await self._drop_slow_client(link, waiting)
                return
        link.queued_bytes += len(data)
        await self._apply(link, link.session.send(data))
        if not wait:
            return
        websocket = link.websocket
        # Backpressure: a WebSocket client that does not read slows its sender down.  With
        # nothing left in the transport's buffer (the usual case: the kernel took it all),
        # writing cannot be paused and drain() would return at once: skip the call.
        if websocket is not None and websocket.transport is not None \
                and websocket.transport.get_write_buffer_size():
            try:
                await websocket.drain()
            except ConnectionClosed:
                pass

    async def _drop_slow_client(self, link: _Link, waiting: int) -> None:
        """A client with more than ``max_write_buffer`` bytes waiting: close the session and
        abort its TCP connection (it does not read: a closing handshake would wait in vain)."""
        logger.warning("session %s: %d bytes waiting for the client, more than max_write_buffer "
                       "(%d): it reads too slowly, disconnected", link.session.sid, waiting,
                       self.max_write_buffer)
        websocket = link.websocket
        await self._apply(link, link.session.fail("transport error"))
        if websocket is not None and websocket.transport is not None:
            websocket.transport.abort()   # frees what it holds at once

    async def disconnect(self, sid: str | None = None) -> None:
        """Close one session (or all of them with ``sid=None``) from the server."""
        sids = [sid] if sid is not None else list(self._links)
        now = asyncio.get_running_loop().time()
        for one in sids:
            link = self._links.get(one)
            if link is not None:
                await self._apply(link, link.session.close(now))

    # --- starting and stopping ---------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "Server":
        for server in (self, *self._mounted):
            server._start_timers()
        loop = asyncio.get_running_loop()
        self._tcp_server = await loop.create_server(lambda: _TCPConnection(self), host, port)
        return self

    def _start_timers(self) -> None:
        self._timers = Timers(self.core.next_deadline, self._tick,
                              asyncio.get_running_loop().time,
                              logger=logger, failure="heartbeat timers failed")
        self._closed = asyncio.Event()
        self._timer_task = asyncio.create_task(self._timers.run())

    async def close(self) -> None:
        """Stop listening, close every session, let the connections finish, then end them.

        Held polls are answered (with the close packet), WebSockets get close 1001 ("going
        away"); polling sessions with no GET held keep their close packet for up to
        ``close_timeout`` seconds, then are forgotten.
        """
        if self._closing:
            assert self._closed is not None
            await self._closed.wait()
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        if self._tcp_server is not None:
            self._tcp_server.close()
        mounted = [asyncio.ensure_future(server.close()) for server in self._mounted]
        await self.disconnect()
        deadline = loop.time() + self.close_timeout
        while self._links and loop.time() < deadline:  # polling clients fetch their close packet
            await asyncio.sleep(0.01)
        for link in list(self._links.values()):
            await self._apply(link, link.session.fail("forced close"))
        if mounted:
            await asyncio.gather(*mounted)
        for connection in list(self._connections):
            if connection.idle:
                connection.close()
        await self._wait_for_connections(self.close_timeout)
        for connection in list(self._connections):  # the stubborn ones
            connection.transport.abort()
        await self._wait_for_connections(1.0)
        for connection in list(self._connections):  # stuck in a handler: last resort
            if connection.task is not None:
                connection.task.cancel()
        if self._timer_task is not None:
            self._timer_task.cancel()
            await asyncio.gather(self._timer_task, return_exceptions=True)
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()
        assert self._closed is not None
        self._closed.set()

    async def _wait_for_connections(self, timeout: float) -> None:
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def wait_closed(self) -> None:
        assert self._closed is not None
        await self._closed.wait()

    # --- applying the session's outputs -------------------------------------------------------

    async def _apply(self, link: _Link, outputs: Sequence[Output]) -> None:
        """Do the actions on the wire (no waiting), then tell the application, in order."""
        for output in outputs:
            if isinstance(output, Action):
                self._act(link, output)
        for output in outputs:
            if isinstance(output, MessageReceived):
                await self._trigger("message", link.session.sid, output.data)
            elif isinstance(output, SessionClosed):
                await self._session_closed(link, output.reason)
            elif not isinstance(output, Action):
                logger.debug("session %s: %s", link.session.sid, output)
        # Wake the timer task only if this session now has a deadline earlier than the one the
        # timer sleeps until.  A deadline that moved later (or went away) needs no wake-up: the
        # timer ticks for nothing and looks again.  (Waking it on every message cost one more
        # event-loop pass per message.)
        deadline = link.session.next_deadline()
        if deadline is not None and self._timers is not None:
            self._timers.wake(deadline)

    def _act(self, link: _Link, action: Action) -> None:
        if isinstance(action, (AnswerPoll, SendWebSocket)):
            link.queued_bytes = 0   # the session's buffer went to a transport
        if isinstance(action, AnswerPoll):
            self._answer_held_poll(link, self.core.answer_held_poll(link.held_request, action.packets)
                                   if link.held_request is not None else None)
        elif isinstance(action, SendWebSocket):
            self._send_websocket(link, action.packets)
        elif isinstance(action, CloseWebSocket):
            websocket, link.websocket = link.websocket, None
            if link.early is not None:  # no 101 yet: there will be none (see _websocket)
                link.early = None
            elif websocket is not None:
                websocket.close_nowait(CloseCode.GOING_AWAY if self._closing else CloseCode.NORMAL_CLOSURE)

    @staticmethod
    def _send_websocket(link: _Link, packets: Sequence[Packet]) -> None:
        """One packet per message: text packets in text frames, binary ones in binary frames.
        Written at once, never waiting (see :meth:`send` for the bound)."""
        if link.early is not None:
            link.early.extend(packets)
            return
        if link.websocket is None:
            return
        for packet in packets:
            try:
                link.websocket.send_nowait(encode_packet(packet, for_polling=False))
            except ConnectionClosed:
                return  # closing: the session is over, what is left is dropped

    @staticmethod
    def _answer_held_poll(link: _Link, reply: HTTPReply | None) -> None:
        future = link.held_reply
        link.held_reply = link.held_request = None
        if future is not None and not future.done() and reply is not None:
            future.set_result(reply)

    async def _session_closed(self, link: _Link, reason: str) -> None:
        sid = link.session.sid
        self.core.sessions.pop(sid, None)
        if self._links.get(sid) is link:
            del self._links[sid]
        if link.held_reply is not None:  # the core always answers a held poll; never hang anyway
            self._answer_held_poll(link, self.core.error_reply(EngineIOError(1)))
        if link.connected:
            link.connected = False
            await self._trigger("disconnect", sid, reason)

    async def _trigger(self, event: str, *args: Any) -> Any:
        handler = self.handlers.get(event)
        if handler is None:
            return None
        try:
            result = handler(*args)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception:
            logger.exception("the %r handler failed", event)
            return False if event == "connect" else None

    async def _connect(self, link: _Link, request: Request) -> bool:
        """A new session: ask the connect handler; a refusal forgets the session."""
        self._links[link.session.sid] = link
        link.request = request
        if await self._trigger("connect", link.session.sid, request) is False:
            link.session.fail("forced close")
            await self._session_closed(link, "forced close")
            return False
        link.connected = True
        return True

    # --- timers --------------------------------------------------------------------------------

    async def _tick(self, now: float) -> None:
        """The timer task's tick (:class:`lablib._timers.Timers`): every session's timers."""
        for sid, outputs in self.core.tick(now).items():
            link = self._links.get(sid)
            if link is not None:
                await self._apply(link, outputs)

    # --- HTTP ------------------------------------------------------------------------------------

    async def _serve(self, connection: _TCPConnection) -> None:
        """The task of one TCP connection, from its first request to its end."""
        self._connections.add(connection)
        try:
            await self._serve_connection(connection)
        except (ConnectionError, TimeoutError):
            pass
        except Exception:
            logger.exception("connection failed")
            if not connection.is_closing():
                connection.write(format_response(500, (("Content-Length", "0"), ("Connection", "close"))))
        finally:
            connection.close()
            try:  # what we wrote must be taken within close_timeout; else drop it (RST)
                async with asyncio.timeout(self.close_timeout):
                    await connection.wait_closed()
            except (TimeoutError, OSError):
                connection.transport.abort()
            finally:
                self._connections.discard(connection)

    async def _serve_connection(self, connection: _TCPConnection) -> None:
        """HTTP/1.1 keep-alive: one request, its answer, the next request, ..."""
        leftover = b""
        while not self._closing:
            # a fresh parser per request, fed the bytes already read beyond the last one
            # (RequestParser.start_next_cycle keeps them inside h11, where a request that is
            # already complete can only be reached by feeding more data; b"" would mean EOF)
            parser = RequestParser(max_header_size=self.max_request_size,
                                   max_body_size=max(s.core.max_payload for s in (self, *self._mounted)))
            connection.idle = True
            try:
                async with asyncio.timeout(self.request_timeout):
                    request = await self._read_request(parser, connection, leftover)
            except HandshakeError as exc:  # malformed HTTP, or a body over maxPayload
                if exc.status == 413:  # the core's answer to a POST over maxPayload; the rest
                    # of the body is unread, so this connection cannot carry another request
                    connection.write(format_response(413, (("Content-Length", "0"), ("Connection", "close"))))
                else:
                    connection.write(error_response(exc.status or 400, exc.reason))
                await self._lingering_close(connection)
                return
            if request is None:
                return
            connection.idle = False
            leftover = parser.trailing_data
            endpoint = self._endpoint_for(request)
            if endpoint is not None:
                keep_alive, leftover = await endpoint._handle(request, connection, leftover)
            else:
                keep_alive = await self._handle_http(request, connection)
            async with asyncio.timeout(self.request_timeout):  # a client must read its answer
                await connection.drain()
            if not keep_alive:
                return

    def _endpoint_for(self, request: Request) -> "Server | None":
        """The Engine.IO server whose path the request is under (this one or a mounted one)."""
        return next((server for server in (self, *self._mounted) if server.core.handles(request)), None)

    # --- other HTTP routes: the request handlers, then the static directory ------------------

    async def _handle_http(self, request: Request, connection: _TCPConnection) -> bool:
        """Answer a request outside every Engine.IO path; return: keep the connection?"""
        handler = self.routes.get(request.path)
        if handler is not None:
            reply = await self._run_route(handler, request)
        elif self.static_dir is not None:
            reply = await asyncio.to_thread(_static_file, self.static_dir, request)
        else:
            reply = self.core.handle_request(request, 0.0).reply  # the core's 404
        assert isinstance(reply, HTTPReply)
        return _write_reply(connection, request, reply)

    async def _run_route(self, handler: RouteHandler, request: Request) -> HTTPReply:
        try:
            response = handler(request)
            if inspect.isawaitable(response):
                response = await response
        except Exception:
            logger.exception("the route handler for %s failed", request.path)
            return plain_reply(500, "Internal Server Error")  # the application's failure, said so
        if response is None:
            return plain_reply(404, "Not Found")
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        if response.status >= 200 and response.status not in (204, 304):
            headers.append(("Content-Length", str(len(response.body))))
        return HTTPReply(response.status, tuple(headers), response.body)

    async def _lingering_close(self, connection: _TCPConnection) -> None:
        """Close after an error answer so that the peer gets to read it.

        Closing a socket whose receive buffer still holds the peer's bytes makes the kernel
        send a reset, and a reset can destroy the answer before the peer reads it.  So, as
        HTTP servers do (RFC 9112 §9.6; Apache's and nginx's "lingering close"): send the
        answer, shut down our sending side (FIN), then read and discard what the peer still
        sends until it closes too, for at most ``close_timeout`` seconds and
        :data:`LINGER_MAX_BYTES` bytes; then close.
        """
        try:
            async with asyncio.timeout(self.close_timeout):
                await connection.drain()
                if connection.can_write_eof():
                    connection.write_eof()
                discarded = 0
                while discarded < LINGER_MAX_BYTES:
                    data = await connection.read()
                    if not data:
                        break
                    discarded += len(data)
        except (TimeoutError, ConnectionError):
            pass

    async def _read_request(self, parser: RequestParser, connection: _TCPConnection,
                            data: bytes) -> Request | None:
        """Feed the parser until a whole request; None if the client closed between requests."""
        received_any = bool(data)
        while True:
            if data:
                result = parser.receive_data(data)
                if result is not NEED_DATA:
                    return result
            data = await connection.read()
            if not data:
                if not received_any:
                    return None
                parser.receive_eof()  # raises HandshakeError for a cut request
                return None
            received_any = True

    async def _handle(self, request: Request, connection: _TCPConnection,
                      leftover: bytes) -> tuple[bool, bytes]:
        """Answer one request; return (keep the connection?, bytes already read beyond it)."""
        loop = asyncio.get_running_loop()
        result = self.core.handle_request(request, loop.time())
        reply, session = result.reply, result.session
        link = self._links.get(session.sid) if session is not None else None
        is_new = session is not None and link is None
        if session is not None and link is None:
            link = _Link(session)

        if isinstance(reply, AcceptWebSocket) and reply.close_at_once:
            await self._close_at_once(request, reply, connection, leftover)
            return False, b""
        if isinstance(reply, AcceptWebSocket):
            assert link is not None
            await self._websocket(request, result, link, is_new, connection, leftover)
            return False, b""
        if is_new:
            assert link is not None
            if not await self._connect(link, request):
                reply = self.core.error_reply(EngineIOError(4), _cors_fields(reply))
        if isinstance(reply, HoldPoll):
            assert link is not None
            future = loop.create_future()
            link.held_request, link.held_reply = request, future
            await self._apply(link, result.outputs)
            answer, leftover = await self._wait_for_answer(link, future, connection, leftover)
            if answer is None:
                return False, b""  # the client went away
            reply = answer
        elif link is not None and request.method == "POST" and isinstance(reply, HTTPReply) \
                and reply.status == 200:
            reply = await self._receive_post(link, result.outputs, reply)
        elif link is not None:
            await self._apply(link, result.outputs)
        assert isinstance(reply, HTTPReply)
        return _write_reply(connection, request, reply), leftover

    async def _receive_post(self, link: _Link, outputs: Sequence[Output],
                            reply: HTTPReply) -> HTTPReply:
        """Hand a POST's messages to the application; the POST is answered once they are handled.

        A client sends its next POST only after the answer, so a second POST of the session
        while the first one's messages are still being handled breaks the protocol: as the
        reference server (``polling.ts``, "data request overlap from client"), it gets a 400
        and the session closes ("transport error").  Otherwise the handlers of two POSTs
        would run at the same time, and those of one session run in order.
        """
        if link.posting:
            await self._apply(link, link.session.fail("transport error"))
            return self.core.error_reply(EngineIOError(3), _cors_fields(reply))
        link.posting = True
        try:
            await self._apply(link, outputs)
        finally:
            link.posting = False
        return reply

    async def _wait_for_answer(self, link: _Link, future: asyncio.Future, connection: _TCPConnection,
                               leftover: bytes) -> tuple[HTTPReply | None, bytes]:
        """Hold a GET until the session answers it; notice a client that disconnects meanwhile.

        Bytes that arrive while we wait (a pipelined request) are kept for later, and reading
        stops there: TCP flow control bounds what a client can push at us.
        """
        if leftover:  # already something after this GET: just wait for the answer
            return await future, leftover
        read = asyncio.ensure_future(connection.read())
        try:
            await asyncio.wait({future, read}, return_when=asyncio.FIRST_COMPLETED)
            if not future.done():
                try:
                    data = read.result()
                except ConnectionError:
                    data = b""
                if data:
                    return await future, data
                if link.held_reply is future:  # the client dropped the held GET
                    now = asyncio.get_running_loop().time()
                    await self._apply(link, link.session.poll_aborted(now))
                return None, b""
            if read.done() and not read.cancelled() and read.exception() is None:
                leftover = read.result()
                if not leftover:
                    return None, b""  # answered, but nobody is left to read it
            return future.result(), leftover
        finally:
            if not read.done():
                read.cancel()
                await asyncio.wait({read})  # the connection is free again only once it has stopped

    # --- WebSocket -------------------------------------------------------------------------------

    async def _websocket(self, request: Request, result: RequestResult, link: _Link, is_new: bool,
                         connection: _TCPConnection, leftover: bytes) -> None:
        """RFC 6455 handshake on the request the core accepted, then the session's messages."""
        loop = asyncio.get_running_loop()
        session = link.session
        websocket = self._new_websocket(request, connection)
        if websocket is None:
            await self._apply(link, session.websocket_closed(loop.time()))
            return
        link.websocket, link.early = websocket, []
        # a direct WebSocket session's open packet: kept in link.early until the 101 is written
        await self._apply(link, result.outputs)
        if is_new and not await self._connect(link, request):
            # the reference refuses a WebSocket request with 400 text/html (abortUpgrade)
            connection.write(self.core.upgrade_error_reply(EngineIOError(4)).to_bytes())
            return
        if link.websocket is not websocket:  # the session closed it before the 101: no 101
            return
        assert isinstance(result.reply, AcceptWebSocket)
        connection.write(websocket.connection.accept(extra_headers=result.reply.headers))
        connection.hand_over(websocket, leftover)
        early, link.early = link.early or [], None
        self._send_websocket(link, early)
        await self._run_websocket(link, websocket)

    def _new_websocket(self, request: Request, connection: _TCPConnection) -> WebSocket | None:
        """A server WebSocket for the request (RFC 6455 §4.2.1 checks), not open yet; None if
        the checks refused it (the HTTP error answer is written)."""
        websocket = Connection(Role.SERVER, handshake=ServerHandshake(),
                               max_message_size=self.core.max_payload)
        if isinstance(websocket.receive_request(request)[0], Rejected):
            connection.write(websocket.data_to_send())
            return None
        # Engine.IO has heartbeats of its own: no WebSocket keepalive pings
        return WebSocket(websocket, ping_interval=None, close_timeout=self.close_timeout)

    async def _close_at_once(self, request: Request, reply: AcceptWebSocket,
                             connection: _TCPConnection, leftover: bytes) -> None:
        """A second WebSocket for a session that has one: 101, a close frame without a status
        code, wait (at most ``close_timeout``) for the peer's close, end the TCP connection.
        The session is not touched."""
        websocket = self._new_websocket(request, connection)
        if websocket is None:
            return
        connection.write(websocket.connection.accept(extra_headers=reply.headers))
        connection.hand_over(websocket, leftover)
        await websocket.close(None)

    async def _run_websocket(self, link: _Link, websocket: WebSocket) -> None:
        """WebSocket messages -> Engine.IO packets, until the TCP connection is closed."""
        loop = asyncio.get_running_loop()
        session = link.session
        try:
            while True:
                try:
                    message = await websocket.recv()
                except ConnectionClosed:
                    logger.debug("session %s: WebSocket closed %s", session.sid, websocket.close_code)
                    break
                await self._apply(link, session.receive_websocket_message(message, loop.time()))
        finally:
            if link.websocket is websocket:  # the session did not close it itself: tell it
                link.websocket = None
                await self._apply(link, session.websocket_closed(loop.time()))


# --- helpers ---------------------------------------------------------------------------------------

def _static_file(root: pathlib.Path, request: Request) -> HTTPReply:
    """A file under ``root`` for a GET or HEAD (``/`` and directories: their ``index.html``).

    The decoded path must stay inside ``root`` once resolved (no ``..``, no symlink out);
    anything else is 404, as a missing file is.
    """
    if request.method not in ("GET", "HEAD"):
        return plain_reply(405, "Method Not Allowed", (("Allow", "GET, HEAD"),))
    relative = urllib.parse.unquote(request.path).lstrip("/")
    if "\x00" in relative:
        return plain_reply(404, "Not Found")
    candidate = (root / relative).resolve()
    if candidate == root or (relative.endswith("/") and candidate.is_dir()):
        candidate = candidate / "index.html"
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return plain_reply(404, "Not Found")
    body = candidate.read_bytes()
    content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type == "application/javascript":
        content_type += "; charset=utf-8"
    return HTTPReply(200, (("Content-Type", content_type), ("Content-Length", str(len(body)))), body)


def _cors_fields(reply: object) -> list[tuple[str, str]]:
    """The CORS fields of a reply the core built (to reuse them on a refusal)."""
    if not isinstance(reply, HTTPReply):
        return []
    return [(k, v) for k, v in reply.headers if k.lower().startswith("access-control-") or k.lower() == "vary"]


def _write_reply(connection: "_TCPConnection", request: Request, reply: HTTPReply) -> bool:
    """Write the answer to ``request``; return: keep the connection open?"""
    close = _wants_close(request, reply)
    data = _with_close(reply) if close else reply.to_bytes()
    if request.method == "HEAD":  # the header fields a GET would get, no body (RFC 9110 §9.3.2)
        data = data[:len(data) - len(reply.body)]
    connection.write(data)
    return not close


def _wants_close(request: Request, reply: HTTPReply) -> bool:
    if request.http_version == "1.0" or "close" in request.headers.tokens("connection"):
        return True
    return any(k.lower() == "connection" and "close" in v.lower() for k, v in reply.headers)


def _with_close(reply: HTTPReply) -> bytes:
    headers = list(reply.headers)
    if not any(k.lower() == "connection" for k, _ in headers):
        headers.append(("Connection", "close"))
    return format_response(reply.status, headers, reply.body)


class Serving:
    """What a ``serve(...)`` object does with its ``server``, ``host`` and ``port``:
    ``await serve(...)`` starts the server; ``async with serve(...) as server`` starts it and
    closes it on the way out.  Shared by the Engine.IO and Socket.IO ``serve``."""

    server: Any
    host: str
    port: int

    def __await__(self):
        return self.server.start(self.host, self.port).__await__()

    async def __aenter__(self):
        return await self.server.start(self.host, self.port)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.server.close()


class serve(Serving):
    """``async with serve(server_or_handlers, host, port) as srv`` (or ``srv = await serve(...)``).

    ``server_or_handlers`` is a :class:`Server` (then no setting may be given: they are the
    Server's), or a mapping ``{"message": f, ...}`` for a new Server built with the keyword
    settings below - those of :class:`Server`, with the same defaults: the sids come from
    :mod:`secrets` (``rng``), cross-origin browser pages are refused (``cors_allowed_origins``),
    bodies and messages are bounded (``max_payload``), and so on.
    """

    server_class = Server  #: what a mapping of handlers is turned into (Socket.IO reuses serve)

    def __init__(self, server_or_handlers: Server | Mapping[str, Callable[..., Any]],
                 host: str = "127.0.0.1", port: int = 0, *, path: str = "/engine.io/",
                 ping_interval: int = 25000, ping_timeout: int = 20000, max_payload: int = 1_000_000,
                 upgrade_timeout: int = 10000, transports: Sequence[str] = ("polling", "websocket"),
                 allow_upgrades: bool = True, cors_allowed_origins: str | Sequence[str] | None = None,
                 cors_credentials: bool = True,
                 allow_request: Callable[[Request], bool | str | None] | None = None,
                 max_buffered_packets: int = 10_000, rng: random.Random | None = None,
                 max_request_size: int = 16 * 1024, request_timeout: float = 60.0,
                 close_timeout: float = 5.0, max_write_buffer: int = 4 * 1024 * 1024,
                 routes: Mapping[str, RouteHandler] | None = None,
                 static_dir: str | os.PathLike[str] | None = None,
                 http_compression: bool = True, compression_threshold: int = 1024) -> None:
        settings = dict(
            path=path, ping_interval=ping_interval, ping_timeout=ping_timeout,
            max_payload=max_payload, upgrade_timeout=upgrade_timeout, transports=transports,
            allow_upgrades=allow_upgrades, cors_allowed_origins=cors_allowed_origins,
            cors_credentials=cors_credentials, allow_request=allow_request,
            max_buffered_packets=max_buffered_packets, rng=rng, max_request_size=max_request_size,
            request_timeout=request_timeout, close_timeout=close_timeout,
            max_write_buffer=max_write_buffer, routes=routes, static_dir=static_dir,
            http_compression=http_compression, compression_threshold=compression_threshold)
        # only what the caller changed goes on: a subclass's server (Socket.IO's) keeps its
        # own defaults (its path is /socket.io/)
        defaults = {name: p.default for name, p in inspect.signature(serve.__init__).parameters.items()}
        changed = {name: value for name, value in settings.items() if value is not defaults[name]
                   and value != defaults[name]}
        if isinstance(server_or_handlers, self.server_class):
            if changed:
                raise TypeError(f"settings go to {self.server_class.__name__}(...) when a server is given")
            self.server = server_or_handlers
        else:
            self.server = self.server_class(**changed)
            for event, handler in server_or_handlers.items():
                self.server.on(event, handler)
        self.host, self.port = host, port
