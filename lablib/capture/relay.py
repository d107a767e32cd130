"""An unprivileged recording TCP relay, with fault injection.

The relay listens on 127.0.0.1, and for every client that connects it opens a connection to the
target and copies bytes both ways.  Whatever one ``read()`` returned becomes one
:class:`~lablib.capture.records.Chunk` (timestamped when the relay read it), so the relay sees
exactly what the applications see: a byte stream, cut into pieces by timing, not by protocol.

::

    client ──c2s──▶ relay ──c2s──▶ target
           ◀──s2c──       ◀──s2c──

For the chapters on failures the relay can misbehave on demand:

* ``relay.delay = 0.2`` (or ``delay_c2s`` / ``delay_s2c``): add latency to every chunk;
* ``relay.stall("s2c")`` / ``relay.resume("s2c")``: stop forwarding one direction.  The relay
  keeps reading until its small buffer is full, then stops reading, so TCP flow control pushes
  back on the sender (its ``drain()`` blocks) instead of the relay's memory growing;
* ``relay.cut()``: abort every open connection on both sides (the peers see a RST, RFC 9293
  §3.10.7.1 — like a middlebox dropping the connection);
* ``relay.refuse = True``: close new connections at once, without contacting the target.

Closing follows TCP's half-close (RFC 9293 §3.6): when one side finishes sending (EOF), the relay
forwards the FIN (``write_eof``) and keeps copying the other direction until it finishes too.
The conversation's ``end`` is set when both directions are finished (or the connection reset).

Usage (top-level await in a notebook)::

    async with Relay("127.0.0.1", server_port) as relay:
        ...connect clients to ("127.0.0.1", relay.port)...
    relay.capture.conversations[0].data("c2s")

**Balancing mode.**  :class:`Balancer` is a relay with several targets: a teaching load
balancer for the chapter on scaling out.  It reads each HTTP request (h11, through
:mod:`lablib.http`), chooses a backend for it with a :class:`~lablib.capture.balancing.Router`
(round-robin, random, or sticky by Engine.IO sid, by cookie, by client address), forwards the
request's exact bytes on a new connection to that backend, and copies the answer back; a ``101``
turns the connection into a pipe (WebSocket).  Every decision is a :class:`Route` in
``balancer.routes``; every backend connection a conversation in ``balancer.capture``::

    async with Balancer(cluster.targets, "round-robin") as lb:
        ...a long-polling client on http://127.0.0.1:{lb.port} fails...
    print(lb.table())
    #1 GET /socket.io/?EIO=4&transport=polling&t=...  => backend 0 (round-robin) -> 200
    #2 GET /socket.io/?EIO=4&transport=polling&sid=...  => backend 1 (round-robin) -> 400 {"code":1,...}

While a request waits for its answer (a long-poll), the balancer does not read from that client:
a client that leaves meanwhile is noticed when the backend answers (at the latest with the next
Engine.IO ping), or at ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import parse_qs, urlsplit

from ..errors import HandshakeError
from ..http import NEED_DATA, Request, RequestParser, Response, ResponseParser, error_response
from .balancing import DEFAULT_COOKIE, Choice, Router
from .records import Capture, Chunk, Conversation, Direction

__all__ = ["Relay", "Balancer", "Route"]

logger = logging.getLogger("lablib.capture.relay")

DIRECTIONS: tuple[Direction, Direction] = ("c2s", "s2c")
_EOF = None  # the queue item that stands for "the sender finished" (a FIN)


class _Connection:
    """One client connection and its upstream connection to the target."""

    def __init__(self, conversation: Conversation,
                 client: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.conversation = conversation
        self.client = client
        self.server: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.task: asyncio.Task | None = None
        self.aborted = False

    def streams(self, direction: Direction) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """(where the direction's bytes come from, where they go)."""
        if direction == "c2s":
            return self.client[0], self.server[1]
        return self.server[0], self.client[1]

    def abort(self) -> None:
        """Drop both TCP connections at once, with a RST rather than a FIN.

        ``transport.abort()`` alone only discards asyncio's buffer and closes the socket; the
        kernel then still ends the connection politely with a FIN.  With SO_LINGER set to
        "on, 0 seconds", closing a socket sends a RST instead (see socket(7) and RFC 9293
        §3.10.4, ABORT call).
        """
        self.aborted = True
        for pair in (self.client, self.server):
            if pair is None:
                continue
            sock = pair[1].get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            pair[1].transport.abort()


class Relay:
    """A TCP relay from ``listen_host:listen_port`` to ``target_host:target_port`` that records.

    ``clock`` (default :func:`time.monotonic`) timestamps chunks, relative to the relay's start;
    inject one for deterministic notebook output.  ``chunk_size`` is the largest read;
    ``max_buffered`` is how many chunks per direction may wait to be forwarded (while delayed or
    stalled) before the relay stops reading.
    """

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1",
                 listen_port: int = 0, clock: Callable[[], float] | None = None, *,
                 chunk_size: int = 65536, max_buffered: int = 16,
                 close_timeout: float = 2.0) -> None:
        self.target = (target_host, target_port)
        self.listen = (listen_host, listen_port)
        self.clock = clock or time.monotonic
        self.chunk_size = chunk_size
        self.max_buffered = max_buffered
        self.close_timeout = close_timeout
        self.capture = Capture(source="relay")
        self.refuse = False        #: close new connections at once
        self.refusals_left = 0     #: refuse this many new connections, then accept (refuse_next)
        self._delay: dict[Direction, float] = {"c2s": 0.0, "s2c": 0.0}
        self._stalled: set[Direction] = set()
        self._connections: list[_Connection] = []  # the open ones
        self._server: asyncio.AbstractServer | None = None
        self._t0 = 0.0
        self._changed = asyncio.Event()  # replaced on every change; see _notify()

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._t0 = self.clock()
        self._server = await asyncio.start_server(self._accept, *self.listen)
        # Kept, so that .port still answers after close() (the sockets are gone by then).
        self._port = self._server.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        """The port clients connect to (chosen by the OS if ``listen_port`` was 0)."""
        if self._server is None:
            raise RuntimeError("the relay is not started")
        return self._port

    @property
    def host(self) -> str:
        return self.listen[0]

    async def close(self) -> None:
        """Stop accepting; give open connections ``close_timeout`` to finish, then cut them."""
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.close_timeout):
                await self.wait_idle()
        self.cut()
        await self.wait_idle()
        # only now: since Python 3.12 wait_closed() also waits for the accepted connections
        await self._server.wait_closed()

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def now(self) -> float:
        """Seconds since the relay started, on the relay's clock."""
        return self.clock() - self._t0

    # --- observing --------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake everyone waiting for a change (a chunk, a setting, a connection's end)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[Capture], bool]) -> None:
        """Wait until ``predicate(relay.capture)`` is true; re-checked after every change.

        E.g. ``await relay.wait_for(lambda cap: cap.conversations[0].bytes_s2c >= 5)``.
        Wrap it in ``asyncio.timeout()`` if the condition might never come.
        """
        while not predicate(self.capture):
            await self._changed.wait()

    async def wait_idle(self) -> None:
        """Wait until every connection accepted so far has finished."""
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def pcap_bytes(self, **options) -> bytes:
        """The capture so far as a pcap file with synthesized headers (see :mod:`.pcap`)."""
        from .pcap import dumps_pcap
        return dumps_pcap(self.capture, **options)

    def write_pcap(self, dest, **options) -> None:
        """Write :meth:`pcap_bytes` to a path or binary file object."""
        from .pcap import write_pcap
        write_pcap(self.capture, dest, **options)

    # --- fault injection ----------------------------------------------------------------------

    @property
    def delay(self) -> float:
        """Latency added to both directions (reading it gives the larger of the two)."""
        return max(self._delay.values())

    @delay.setter
    def delay(self, seconds: float) -> None:
        self.delay_c2s = self.delay_s2c = seconds

    @property
    def delay_c2s(self) -> float:
        """Seconds added to every client -> server chunk."""
        return self._delay["c2s"]

    @delay_c2s.setter
    def delay_c2s(self, seconds: float) -> None:
        self._delay["c2s"] = seconds
        self._notify()     # chunks waiting out the old delay re-compute their departure

    @property
    def delay_s2c(self) -> float:
        """Seconds added to every server -> client chunk."""
        return self._delay["s2c"]

    @delay_s2c.setter
    def delay_s2c(self, seconds: float) -> None:
        self._delay["s2c"] = seconds
        self._notify()

    def stall(self, direction: Direction) -> None:
        """Stop forwarding one direction (bytes wait in a bounded buffer, then in TCP)."""
        self._check(direction)
        self._stalled.add(direction)
        self._notify()

    def resume(self, direction: Direction | None = None) -> None:
        """Forward again one direction (or both, if ``direction`` is None)."""
        if direction is None:
            self._stalled.clear()
        else:
            self._check(direction)
            self._stalled.discard(direction)
        self._notify()

    def stalled(self, direction: Direction) -> bool:
        return direction in self._stalled

    def refuse_next(self, count: int) -> None:
        """Refuse the next ``count`` new connections, then accept again.

        An outage of an exact number of attempts, whatever the timing: turning ``refuse`` off
        from a client's error handler would race the client's own reconnection timer.
        """
        self.refusals_left = count

    def cut(self) -> None:
        """Abort every open connection, both sides, as if the network dropped it (RSTs)."""
        now = self.now()
        for conn in self._connections:
            conv = conn.conversation
            if conv.end is None:
                conv.end, conv.reset, conv.closed_by = now, True, None
                conn.abort()
        self._notify()

    @staticmethod
    def _check(direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'c2s' or 's2c', not {direction!r}")

    # --- relaying -----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called by asyncio for each new client (``start_server``'s client_connected_cb)."""
        client = writer.get_extra_info("peername")[:2]
        target = self._choose_target(client)
        conv = Conversation(id=len(self.capture.conversations), client=client,
                            server=target, start=self.now())
        self.capture.conversations.append(conv)
        conn = _Connection(conv, (reader, writer))
        conn.task = asyncio.current_task()
        self._connections.append(conn)
        self._notify()
        try:
            if self.refuse or self.refusals_left > 0:
                self.refusals_left = max(0, self.refusals_left - 1)
                conv.end, conv.closed_by = self.now(), "s2c"
                writer.close()
                return
            try:
                conn.server = await asyncio.open_connection(*target)
            except OSError as exc:
                logger.info("relay: cannot reach %s:%s: %s", *target, exc)
                conv.end, conv.reset, conv.closed_by = self.now(), True, "s2c"
                conn.abort()     # the client sees a reset, as from a refused connection
                return
            conv.server = conn.server[1].get_extra_info("peername")[:2]
            await self._relay(conn)
        finally:
            self._connections.remove(conn)   # the record stays in self.capture
            self._notify()

    def _choose_target(self, client: tuple[str, int]) -> tuple[str, int]:
        """Where a new connection from ``client`` goes (the balancer overrides this)."""
        return self.target

    async def _relay(self, conn: _Connection) -> None:
        """Copy both directions until both are finished; a reset on either side aborts both.

        Each direction is two tasks joined by a bounded queue: a reader that records and
        enqueues, a writer that waits out delay/stall and forwards.  The queue's bound is the
        relay's whole buffer: when it is full the reader stops reading and TCP pushes back.
        """
        try:
            async with asyncio.TaskGroup() as tasks:
                for direction in DIRECTIONS:
                    queue: asyncio.Queue = asyncio.Queue(self.max_buffered)
                    tasks.create_task(self._read(conn, direction, queue))
                    tasks.create_task(self._write(conn, direction, queue))
        except* (ConnectionError, OSError) as group:
            conv = conn.conversation
            if conv.end is None:     # a peer reset: pass it on to the other side
                conv.end, conv.reset = self.now(), True
                conv.closed_by = conv.closed_by or getattr(group.exceptions[0], "direction", None)
            conn.abort()
        else:
            if conn.conversation.end is None:
                conn.conversation.end = self.now()
            conn.client[1].close()
            conn.server[1].close()

    async def _read(self, conn: _Connection, direction: Direction, queue: asyncio.Queue) -> None:
        source, _ = conn.streams(direction)
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await source.read(self.chunk_size)
            except (ConnectionError, OSError) as exc:
                exc.direction = direction       # this side reset: used for closed_by
                raise
            if not data:
                break
            conn.conversation.chunks.append(Chunk(self.now(), direction, data))
            self._notify()
            await queue.put((loop.time(), data))   # waits while the queue is full
        conv = conn.conversation
        if conv.closed_by is None and conv.end is None:
            conv.closed_by = direction              # this side sent its FIN first
        await queue.put((loop.time(), _EOF))

    async def _write(self, conn: _Connection, direction: Direction, queue: asyncio.Queue) -> None:
        _, sink = conn.streams(direction)
        while True:
            received, data = await queue.get()
            await self._until_due(conn, received, direction)
            if conn.aborted:    # cut(): drop what is queued, but let the reader reach its EOF
                if data is _EOF:
                    return
                continue
            try:
                if data is _EOF:
                    if sink.can_write_eof():
                        sink.write_eof()            # half-close: forward the FIN
                    return
                sink.write(data)
                await sink.drain()
            except (ConnectionError, OSError) as exc:
                exc.direction = "s2c" if direction == "c2s" else "c2s"  # the receiver reset
                raise

    async def _until_due(self, conn: _Connection, received: float, direction: Direction) -> None:
        """Wait until ``received + delay`` (event-loop time) and while the direction is stalled.

        Re-evaluated on every change, so lowering the delay or resuming takes effect at once.
        """
        loop = asyncio.get_running_loop()
        while not conn.aborted:
            changed = self._changed
            delay = self.delay_c2s if direction == "c2s" else self.delay_s2c
            remaining = received + delay - loop.time()
            if direction in self._stalled:
                await changed.wait()
            elif remaining > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await changed.wait()
            else:
                return


# ================================================================================================
# Balancing: one listening port, several targets
# ================================================================================================

@dataclass
class Route:
    """One routing decision of a :class:`Balancer`: a request (HTTP mode) or a connection (TCP)."""

    number: int                  #: 1, 2, ... in the order the requests (connections) arrived
    client: tuple[str, int]      #: the client's address
    backend: int                 #: index of the backend in ``balancer.targets``
    reason: str                  #: the rule that chose it (see :mod:`.balancing`)
    #: id of the backend conversation in ``balancer.capture``: in HTTP mode, the balancer's own
    #: connection to the backend (its client address is the balancer's, not the client's)
    conversation: int
    method: str | None = None    #: the request's method (None in TCP mode)
    target: str | None = None    #: the request target, path and query
    status: int | None = None    #: the backend's answer (None: none, or TCP mode)
    error: str | None = None     #: the body of a 4xx/5xx answer (e.g. Engine.IO's error JSON)

    @property
    def sid(self) -> str | None:
        values = parse_qs(urlsplit(self.target or "").query).get("sid")
        return values[0] if values else None

    def __str__(self) -> str:
        what = f"{self.method} {self.target}" if self.method else "connection"
        answer = "" if self.status is None else f" -> {self.status}"
        if self.error:
            answer += " " + self.error
        return f"#{self.number} {what}  => backend {self.backend} ({self.reason}){answer}"


class Balancer(Relay):
    """A recording load balancer in front of several ``targets`` (``[(host, port), ...]``).

    ``http=True`` (the default) reads the HTTP requests and routes *each request* on its own,
    like nginx or HAProxy with keep-alive to the backends turned off: every request gets a new
    connection to the backend chosen for it (one backend conversation in :attr:`capture` per
    request), the answer is copied back, and the connection to that backend is closed; the
    client's own connection stays open (keep-alive).  A request that switches to WebSocket
    (``101``) keeps its backend connection, and from then on bytes are piped both ways.
    ``http=False`` routes whole TCP connections, like a layer-4 balancer (policies
    round-robin, random or ip-hash only).

    ``policy`` and ``upgrade_policy`` (for requests that ask for a WebSocket; default: the same)
    are those of :class:`~lablib.capture.balancing.Router`: ``round-robin``, ``random``,
    ``sid``, ``cookie``, ``ip-hash``.  Every decision is appended to :attr:`routes`
    (print them: one line per request), the bytes to :attr:`capture` as the relay records them.
    Of the relay's fault injection, ``cut()`` applies in HTTP mode; delay and stall only in
    TCP mode.

    ::

        async with Balancer([("127.0.0.1", p1), ("127.0.0.1", p2)], "sid") as lb:
            ...clients connect to http://127.0.0.1:{lb.port}...
        print(lb.table())
    """

    def __init__(self, targets: Sequence[tuple[str, int]], policy: str = "round-robin", *,
                 http: bool = True, upgrade_policy: str | None = None,
                 rng: random.Random | None = None, cookie_name: str = DEFAULT_COOKIE,
                 listen_host: str = "127.0.0.1", listen_port: int = 0,
                 clock: Callable[[], float] | None = None, chunk_size: int = 65536,
                 max_header_size: int = 16 * 1024, max_body_size: int = 10 << 20,
                 close_timeout: float = 2.0) -> None:
        if not targets:
            raise ValueError("a balancer needs at least one target")
        super().__init__(*targets[0], listen_host=listen_host, listen_port=listen_port,
                         clock=clock, chunk_size=chunk_size, close_timeout=close_timeout)
        self.targets = [(host, port) for host, port in targets]
        self.http = http
        self.router = Router(len(self.targets), policy, upgrade_policy=upgrade_policy, rng=rng,
                             cookie_name=cookie_name)
        if not http:
            if policy not in ("round-robin", "random", "ip-hash"):
                raise ValueError(f"policy {policy!r} reads HTTP requests: use http=True")
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.routes: list[Route] = []

    @property
    def policy(self) -> str:
        return self.router.policy

    def table(self) -> str:
        """The routes so far, one line each."""
        return "\n".join(str(route) for route in self.routes)

    def cut(self) -> None:
        """Abort every open connection, both sides (client and backend), with RSTs."""
        now = self.now()
        for conn in self._connections:
            conv = conn.conversation
            if conv is not None and conv.end is None:
                conv.end, conv.reset, conv.closed_by = now, True, None
            if not conn.aborted:
                conn.abort()
        self._notify()

    # --- TCP mode ------------------------------------------------------------------------------

    def _choose_target(self, client: tuple[str, int]) -> tuple[str, int]:
        choice = self.router.choose_connection(client[0])
        self.routes.append(Route(len(self.routes) + 1, client, choice.backend, choice.reason,
                                 conversation=len(self.capture.conversations)))
        return self.targets[choice.backend]

    # --- HTTP mode -----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.http:
            return await super()._accept(reader, writer)
        conn = _Connection(None, (reader, writer))
        conn.task = asyncio.current_task()
        self._connections.append(conn)
        try:
            await self._serve_client(conn, writer.get_extra_info("peername")[:2])
        except (ConnectionError, OSError):
            conn.abort()
        finally:
            writer.close()
            if conn.server is not None:
                conn.server[1].close()
            self._connections.remove(conn)
            self._notify()

    async def _serve_client(self, conn: _Connection, client: tuple[str, int]) -> None:
        """The client's keep-alive connection: read a request, route it, answer; again."""
        reader, writer = conn.client
        leftover = b""
        while True:
            parser = RequestParser(max_header_size=self.max_header_size,
                                   max_body_size=self.max_body_size)
            try:
                got = await self._read_request(parser, reader, leftover)
            except HandshakeError as exc:
                writer.write(error_response(exc.status or 400, exc.reason))
                await writer.drain()
                return
            if got is None:
                return
            request, raw = got
            leftover = parser.trailing_data
            choice = self.router.choose(request, client[0])
            route = Route(len(self.routes) + 1, client, choice.backend, choice.reason,
                          conversation=len(self.capture.conversations),
                          method=request.method, target=request.target)
            self.routes.append(route)
            if not await self._forward(conn, client, request, raw, choice, route, leftover):
                return

    async def _read_request(self, parser: RequestParser, reader: asyncio.StreamReader,
                            data: bytes) -> tuple[Request, bytes] | None:
        """(the next request, its exact bytes), or None if the client closed between requests."""
        received = bytearray()
        while True:
            if data:
                received += data
                result = parser.receive_data(data)
                if result is not NEED_DATA:
                    unread = len(parser.trailing_data)
                    return result, bytes(received[:len(received) - unread])
            data = await reader.read(self.chunk_size)
            if not data:
                if received:
                    parser.receive_eof()   # raises HandshakeError for a cut request
                return None

    async def _forward(self, conn: _Connection, client: tuple[str, int], request: Request,
                       raw: bytes, choice: Choice, route: Route, leftover: bytes) -> bool:
        """Send one request to its backend, the answer to the client; True: keep the client."""
        target = self.targets[choice.backend]
        conv = Conversation(id=len(self.capture.conversations), client=client, server=target,
                            start=self.now())
        self.capture.conversations.append(conv)
        conn.conversation, conn.server = conv, None
        self._notify()
        writer = conn.client[1]
        try:
            conn.server = await asyncio.open_connection(*target)
        except OSError as exc:
            logger.info("balancer: cannot reach backend %d at %s:%s: %s", choice.backend, *target, exc)
            conv.end, conv.reset, conv.closed_by = self.now(), True, "s2c"
            route.status, route.error = 502, "backend unreachable"
            writer.write(error_response(502, f"backend {choice.backend} is unreachable"))
            await writer.drain()
            return False
        upstream_reader, upstream = conn.server
        # the conversation is the backend's TCP connection: from the balancer's own port
        conv.client = upstream.get_extra_info("sockname")[:2]
        conv.server = upstream.get_extra_info("peername")[:2]
        self._record(conv, "c2s", raw)
        upstream.write(raw)
        await upstream.drain()
        try:
            response, head_and_body, trailing = await self._read_response(conn, request)
        except HandshakeError as exc:
            logger.info("balancer: bad answer from backend %d: %s", choice.backend, exc.reason)
            route.status, route.error = 502, exc.reason
            self._finish_backend(conn)
            writer.write(error_response(502, f"bad answer from backend {choice.backend}"))
            await writer.drain()
            return False
        route.status = response.status
        if response.status >= 400:
            route.error = response.body[:200].decode("utf-8", "replace")
        writer.write(_with_fields(head_and_body, self.router.learn(request, choice, response)))
        if response.status == 101:
            writer.write(trailing)   # already the new protocol's bytes
            await writer.drain()
            await self._pipe(conn, leftover)
            return False
        await writer.drain()
        self._finish_backend(conn)
        return not (_closes(request.headers) or _closes(response.headers)
                    or not _framed(response))

    async def _read_response(self, conn: _Connection, request: Request) -> tuple[Response, bytes, bytes]:
        """Read the backend's answer: (parsed, its exact bytes, bytes read beyond it)."""
        reader = conn.server[0]
        # h11 needs the request's framing only (a POST's body was sent as raw bytes already)
        fields = [(k, v) for k, v in request.headers if k.lower() in ("host", "connection", "upgrade")]
        parser = ResponseParser(method=request.method, target=request.target, headers=fields,
                                max_header_size=self.max_header_size,
                                max_body_size=self.max_body_size)
        received = bytearray()
        while True:
            data = await reader.read(self.chunk_size)
            if data:
                self._record(conn.conversation, "s2c", data)
                received += data
            result = parser.receive_data(data)   # b"": the backend closed
            if result is not NEED_DATA:
                trailing = parser.trailing_data
                return result, bytes(received[:len(received) - len(trailing)]), trailing
            if not data:
                raise HandshakeError(502, "the backend closed without an answer")

    def _finish_backend(self, conn: _Connection) -> None:
        """Upstream keep-alive is off: we close the backend connection after its answer."""
        conv = conn.conversation
        if conv.end is None:
            conv.end, conv.closed_by = self.now(), conv.closed_by or "c2s"
        conn.server[1].close()
        conn.server = None

    async def _pipe(self, conn: _Connection, leftover: bytes) -> None:
        """After a ``101``: copy both ways (recording) until both sides have finished."""
        conv = conn.conversation

        async def copy(direction: Direction, first: bytes = b"") -> None:
            source, sink = conn.streams(direction)
            data = first or await source.read(self.chunk_size)
            while data:
                self._record(conv, direction, data)
                sink.write(data)
                await sink.drain()
                data = await source.read(self.chunk_size)
            if conv.closed_by is None:
                conv.closed_by = direction
            if sink.can_write_eof():
                sink.write_eof()

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(copy("c2s", leftover))
                tasks.create_task(copy("s2c"))
        except* (ConnectionError, OSError):
            conv.reset = True
            conn.abort()
        if conv.end is None:
            conv.end = self.now()
        conn.server[1].close()

    def _record(self, conv: Conversation, direction: Direction, data: bytes) -> None:
        conv.chunks.append(Chunk(self.now(), direction, data))
        self._notify()


def _with_fields(head_and_body: bytes, fields: list[tuple[str, str]]) -> bytes:
    """Insert header fields right after the status line (how a balancer adds its cookie)."""
    if not fields:
        return head_and_body
    status_line, rest = head_and_body.split(b"\r\n", 1)
    added = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in fields)
    return status_line + b"\r\n" + added + rest


def _closes(headers) -> bool:
    return "close" in headers.tokens("connection")


def _framed(response: Response) -> bool:
    """Does the answer say where it ends (else it ended with the backend's FIN)?"""
    return (response.status in (204, 304) or "content-length" in response.headers
            or "transfer-encoding" in response.headers)
