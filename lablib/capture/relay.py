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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from typing import Callable

from .records import Capture, Chunk, Conversation, Direction

__all__ = ["Relay"]

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
        conv = Conversation(id=len(self.capture.conversations),
                            client=writer.get_extra_info("peername")[:2],
                            server=self.target, start=self.now())
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
                conn.server = await asyncio.open_connection(*self.target)
            except OSError as exc:
                logger.info("relay: cannot reach %s:%s: %s", *self.target, exc)
                conv.end, conv.reset, conv.closed_by = self.now(), True, "s2c"
                conn.abort()     # the client sees a reset, as from a refused connection
                return
            conv.server = conn.server[1].get_extra_info("peername")[:2]
            await self._relay(conn)
        finally:
            self._connections.remove(conn)   # the record stays in self.capture
            self._notify()

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
