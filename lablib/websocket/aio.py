"""The asyncio driver under :mod:`.client` and :mod:`.server`: one :class:`WebSocket` per connection.

It holds no protocol logic: the bytes the event loop reads go into the sans-I/O
:class:`~lablib.websocket.connection.Connection`, the messages that come out wait in a bounded
queue for :meth:`WebSocket.recv`, and the bytes the connection produces go to the transport.
It also does what a sans-I/O core cannot: timers (keepalive pings, the close timeout) and flow
control.  :func:`~lablib.websocket.client.connect` and :func:`~lablib.websocket.server.serve`
create it; the Engine.IO server hands it connections it has upgraded (:meth:`WebSocket.adopt`)::

    async with connect("ws://127.0.0.1:8765/") as ws:     # ws is a WebSocket
        await ws.send("hi")
        print(await ws.recv())

Why it is an :class:`asyncio.BufferedProtocol` and not streams, the one read buffer an event
loop's connections share, and how receiving (a bounded queue and a small backlog) and sending
apply backpressure are told in ``docs/architecture.md``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
import weakref
from typing import Any, AsyncIterable, AsyncIterator, Callable, Iterable

from ..errors import ConnectionClosed as ConnectionClosedError
from ..errors import LocalProtocolError
from .connection import SYSTEM_RANDOM, Connection, Role, WebSocketState
from .events import (Accepted, BinaryReceived, CloseReceived, Event, PongReceived, Rejected,
                     RequestReceived, TextReceived, WebSocketClosed)
from .frames import CloseCode

logger = logging.getLogger("lablib.websocket")

__all__ = ["WebSocket", "shared_read_buffer"]

Data = str | bytes

#: The event loop reads the socket into one buffer of this size that we keep (see get_buffer).
READ_BUFFER_SIZE = 64 * 1024

# One read buffer per event loop, shared by its connections (see the module docstring).
_read_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = \
    weakref.WeakKeyDictionary()


def shared_read_buffer(loop: asyncio.AbstractEventLoop) -> memoryview:
    """The read buffer of ``loop``'s connections, made at its first connection.

    Any :class:`asyncio.BufferedProtocol` that copies the bytes out in ``buffer_updated()``
    may use it (the Engine.IO server's HTTP connections do)."""
    buffer = _read_buffers.get(loop)
    if buffer is None:
        buffer = _read_buffers[loop] = memoryview(bytearray(READ_BUFFER_SIZE))
    return buffer

#: After an error answer, how many more bytes from the peer we read and throw away, at most,
#: before closing TCP anyway (see WebSocket.close_lingering; close_timeout bounds the time).
LINGER_MAX_BYTES = 16 * 1024 * 1024


class WebSocket(asyncio.BufferedProtocol):
    """A WebSocket over an asyncio transport, in the shape of the ``websockets`` API.

    ``await ws.send(msg)``, ``await ws.recv()``, ``async for msg in ws``, ``await ws.ping()``,
    ``await ws.close(code, reason)``.  The client and the server create it as the protocol of
    a new TCP connection, while ``connection`` is still in CONNECTING; see :mod:`.client` and
    :mod:`.server` for the opening handshake.  A server that reads HTTP requests itself (the
    Engine.IO server) hands it an accepted connection instead: :meth:`adopt`.
    """

    def __init__(self, connection: Connection, *, ping_interval: float | None = 20,
                 ping_timeout: float | None = 20, close_timeout: float = 10, max_queue: int = 16,
                 rng: random.Random | None = None) -> None:
        self.connection = connection
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self._rng = rng if rng is not None else SYSTEM_RANDOM
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._read_buffer = shared_read_buffer(self._loop)  # shared: see get_buffer()
        # The opening handshake's outcome: RequestReceived (server), Accepted or Rejected.
        self.handshake_done: asyncio.Future[Event] = self._loop.create_future()
        # Receiving: messages for recv(), and the ones that did not fit (see the module doc).
        self._messages: collections.deque[Data] = collections.deque()
        self._backlog: collections.deque[Data] = collections.deque()
        self._reading_paused = False
        self._close_requested = False  # close() was called: messages from now on may be dropped
        self._recv_waiters: list[asyncio.Future[None]] = []  # one future per waiting recv()
        # Sending: a fragmented message holds the lock from its first frame to its last; any
        # send waits while the transport's buffer is over its high-water mark.
        self._send_lock = asyncio.Lock()
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._pong_waiters: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        # Closing.
        self._closed = self._loop.create_future()  # set when TCP is closed (connection_lost)
        self._timers: list[asyncio.TimerHandle] = []  # close timeouts, cancelled at the end
        self._keepalive_task: asyncio.Task | None = None
        self._lingering = False  # our error answer is out: what the peer sends is discarded
        self._discarded = 0  # bytes discarded while lingering
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.latency: float = 0.0  #: the last keepalive round trip, in seconds

    # ---- public API --------------------------------------------------------------------------

    @property
    def state(self) -> WebSocketState:
        return self.connection.state

    @property
    def subprotocol(self) -> str | None:
        return self.connection.subprotocol

    @property
    def local_address(self) -> Any:
        return self.transport.get_extra_info("sockname")

    @property
    def remote_address(self) -> Any:
        return self.transport.get_extra_info("peername")

    async def recv(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`~lablib.errors.ConnectionClosed` once the connection is closed and every
        message received before the close has been returned.
        """
        while not self._messages:
            if self._closed.done():
                raise self._closed_error()
            # Each waiting recv() has its own future, so cancelling one recv() leaves the
            # others waiting; a message wakes them all and one of them takes it.
            waiter = self._loop.create_future()
            self._recv_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._recv_waiters:
                    self._recv_waiters.remove(waiter)
                raise
        message = self._messages.popleft()
        if self._reading_paused or self._backlog:
            self._make_room()
        return message

    async def __aiter__(self) -> AsyncIterator[Data]:
        """Yield messages until the connection closes; a clean close ends the loop quietly."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedError as exc:
                if exc.ok or exc.code == CloseCode.NO_STATUS_RCVD:
                    return
                raise

    async def send(self, message: Data | Iterable[Data] | AsyncIterable[Data]) -> None:
        """Send a text (``str``) or binary (bytes-like) message.

        An iterable (or async iterable) of ``str`` or of bytes sends one fragmented message:
        one frame per item, the last with ``fin=1`` (§5.4).
        """
        if isinstance(message, str):
            await self._send_frame(self.connection.send_text, message)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            await self._send_frame(self.connection.send_binary, message)
        elif isinstance(message, (AsyncIterable, Iterable)):
            # No other message may start before this one's last frame: hold the send lock.
            async with self._send_lock:
                if isinstance(message, AsyncIterable):
                    await self._send_fragments([item async for item in message])
                else:
                    await self._send_fragments(list(message))
        else:
            raise TypeError(f"cannot send {type(message).__name__}")

    def send_nowait(self, message: Data) -> None:
        """Send a whole text (``str``) or binary message at once, without waiting for room.

        For a caller that bounds what it lets wait itself (a broadcast must not wait for its
        slowest member): ``transport.get_write_buffer_size()`` says how much is waiting.
        Raises :class:`~lablib.errors.ConnectionClosed` once the closing handshake started.
        """
        if self._send_lock.locked():
            raise LocalProtocolError("a fragmented message is being sent")
        if isinstance(message, str):
            self._write(self.connection.send_text, message)
        else:
            self._write(self.connection.send_binary, message)

    async def _send_fragments(self, parts: list[Data]) -> None:
        if not parts:
            raise TypeError("a fragmented message needs at least one fragment")
        is_text = isinstance(parts[0], str)
        if any(isinstance(p, str) != is_text for p in parts):
            raise TypeError("all fragments of a message must be str, or all bytes")
        first = self.connection.send_text if is_text else self.connection.send_binary
        last = len(parts) - 1
        self._write(first, parts[0], last == 0)
        for i, part in enumerate(parts[1:], start=1):
            await self.drain()
            self._write(self.connection.send_continuation, part, i == last)
        await self.drain()

    async def ping(self, data: bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; return a future that resolves to the round-trip time when the pong comes."""
        waiter = self._loop.create_future()
        if data is None:
            data = self._rng.randbytes(4)
            while data in self._pong_waiters:
                data = self._rng.randbytes(4)
        if data in self._pong_waiters:
            raise LocalProtocolError("a ping with this payload is already waiting for its pong")
        # Wait for the pong *before* the ping leaves: if send has to wait, the pong may be back
        # before _send_frame() returns, and must not be mistaken for an unsolicited one.
        self._pong_waiters[data] = (waiter, time.monotonic())
        try:
            await self._send_frame(self.connection.send_ping, data)
        except BaseException:
            self._pong_waiters.pop(data, None)
            raise
        return waiter

    async def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, §5.5.3)."""
        await self._send_frame(self.connection.send_pong, data)

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake (§7.1.2) and wait until TCP is closed.

        If the peer does not answer within ``close_timeout`` seconds, the TCP connection is
        closed anyway.
        """
        self.close_nowait(code, reason)
        await asyncio.shield(self._closed)

    def close_nowait(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake and return; :meth:`wait_closed` waits for its end.

        ``code=None`` sends a close frame without a status code.  If the peer does not answer
        within ``close_timeout`` seconds, the TCP connection is closed anyway.
        """
        self._close_requested = True
        if self._closed.done():
            return
        if self.connection.state is WebSocketState.OPEN:
            try:
                # Written at once: no waiting for a fragmented send() to finish (a control frame
                # may go between fragments, §5.4) nor for a peer that does not read to make
                # room.  close_timeout bounds the whole closing handshake.
                self._write(self.connection.send_close, code, reason)
            except ConnectionClosedError:
                pass
            # Reading may be paused on a full queue: read on, to see the peer's close frame.
            # (Messages that arrive from now on and do not fit are dropped: we asked to close.)
            self._resume_reading()
        elif self.connection.state is WebSocketState.CONNECTING:
            self._abort()
        self._timers.append(self._loop.call_later(self.close_timeout, self._abort))

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await asyncio.shield(self._closed)

    # ---- asyncio.Protocol callbacks: the event loop calls these -------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def adopt(self, transport: asyncio.Transport, data: bytes = b"") -> None:
        """Take over an accepted TCP connection from the protocol that read its handshake
        request (a server that answers plain HTTP on the same port too, as Engine.IO's does),
        once the 101 is written: from now on the event loop calls us.  ``data`` are the
        bytes that protocol read beyond the request."""
        transport.set_protocol(self)
        self.connection_made(transport)
        self.start()
        if data:
            self.data_received(data)

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the event loop should read the next bytes into: always the same buffer, the
        one all connections of this event loop share."""
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        """The event loop read ``nbytes`` bytes into the buffer.  They are copied out at once,
        before any other connection can read into the same buffer."""
        self.data_received(bytes(self._read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        """Bytes arrived: feed them to the connection and act on what comes out."""
        if self._lingering:  # the connection is over; we only read so that TCP closes well
            self._discarded += len(data)
            if self._discarded > LINGER_MAX_BYTES:
                self._abort()
            return
        self._process(self.connection.receive_data(data))

    def eof_received(self) -> None:
        """The peer closed its side of TCP (§7.1.1: a server does that after the closing
        handshake).  Without a closing handshake that is code 1006.  We close ours too."""
        self._process(self.connection.receive_eof())
        self._close_transport()

    def connection_lost(self, exc: Exception | None) -> None:
        self._process(self.connection.receive_eof())  # 1006, unless we closed cleanly before
        for timer in self._timers:
            timer.cancel()
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        self._closed.set_result(None)
        for waiter, _ in self._pong_waiters.values():
            if not waiter.done():
                waiter.set_exception(self._closed_error())
                waiter.exception()  # mark retrieved: nobody may be awaiting it
        self._pong_waiters.clear()
        self._wake(self._recv_waiters)  # they find the connection closed
        self._writing_paused = False
        self._wake(self._drain_waiters)  # drain() raises ConnectionClosed
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()

    def pause_writing(self) -> None:
        """The transport's write buffer passed its high-water mark: send() waits from now on."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        """The write buffer drained below its low-water mark: waiting senders go on, and
        reading resumes if it stopped for the automatic answers (see _process)."""
        self._writing_paused = False
        self._wake(self._drain_waiters)
        if len(self._messages) < self.max_queue and not self._backlog:
            self._resume_reading()

    # ---- receiving ---------------------------------------------------------------------------

    def _process(self, events: list[Event]) -> None:
        """Write the connection's automatic answers, then act on each event."""
        answer = self.connection.data_to_send()
        if answer and not self.transport.is_closing():
            self.transport.write(answer)
            if self._writing_paused:
                # A peer that pings without reading would make us buffer pongs without bound:
                # read no more from it until it has read what we owe it (resume_writing).
                self._pause_reading()
        for event in events:
            if isinstance(event, (TextReceived, BinaryReceived)):
                self._deliver(event.data)
            elif isinstance(event, PongReceived):
                self._pong_received(event.payload)
            elif isinstance(event, CloseReceived):
                self.close_code, self.close_reason = event.code, event.reason
            elif isinstance(event, WebSocketClosed):
                if self.close_code is None or event.error is not None:
                    self.close_code, self.close_reason = event.code, event.reason
                if event.error is not None:
                    logger.info("failing the connection: %s", event.error)
                self._finish_tcp(failed=event.error is not None)
            elif isinstance(event, (RequestReceived, Accepted, Rejected)):
                if not self.handshake_done.done():  # (it is cancelled if open_timeout passed)
                    self.handshake_done.set_result(event)
                if isinstance(event, Accepted):
                    self.start()  # the client is open: frames right behind the 101 come now

    def _deliver(self, message: Data) -> None:
        """Queue a message for recv(); pause reading when the queue is full."""
        messages = self._messages
        if len(messages) < self.max_queue and not self._backlog:
            messages.append(message)
            if self._recv_waiters:
                self._wake(self._recv_waiters)
            if len(messages) >= self.max_queue and self.connection.state is WebSocketState.OPEN:
                self._pause_reading()  # (closing, we read on to the close frame: see close())
        elif not self._close_requested:
            # Read before we paused, or in the same read as the peer's close frame (nothing
            # comes after that one, so this stays bounded): kept, in order, for recv().
            self._backlog.append(message)
            if self.connection.state is WebSocketState.OPEN:
                self._pause_reading()
        # else: we asked to close and nobody reads: the application said it wants nothing more.

    def _make_room(self) -> None:
        """recv() took a message while reading is paused (or messages wait in the backlog):
        refill from the backlog, and resume reading once the queue is down to the low-water
        mark."""
        messages, backlog = self._messages, self._backlog
        while backlog and len(messages) < self.max_queue:
            messages.append(backlog.popleft())
        if not backlog and len(messages) <= self.max_queue // 4 and not self._writing_paused:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def _pong_received(self, payload: bytes) -> None:
        if payload not in self._pong_waiters:
            return  # unsolicited pong: a heartbeat, nothing to resolve
        # A pong acknowledges its ping and every ping sent before it (they are answered in order).
        now = time.monotonic()
        for key in list(self._pong_waiters):
            waiter, sent_at = self._pong_waiters.pop(key)
            if not waiter.done():
                waiter.set_result(now - sent_at)
            if key == payload:
                self.latency = now - sent_at
                break

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()

    # ---- sending -----------------------------------------------------------------------------

    def _closed_error(self) -> ConnectionClosedError:
        code = self.close_code if self.close_code is not None else CloseCode.ABNORMAL_CLOSURE
        return ConnectionClosedError(code, self.close_reason)

    async def _send_frame(self, make_frame: Callable[..., bytes], *args: Any) -> None:
        """Send one frame made by ``make_frame(*args)`` (a Connection method).

        The frame is encoded and written in one step, so it cannot land inside another frame;
        it only has to wait while a fragmented message is being sent (that holds the send
        lock), and afterwards while the transport has paused writing.  Usually neither is the
        case, and sending returns without giving the event loop a turn.
        """
        if self._send_lock.locked():
            async with self._send_lock:
                self._write(make_frame, *args)
        else:
            self._write(make_frame, *args)
        if self._writing_paused:
            await self.drain()

    def _write(self, make_frame: Callable[..., bytes], *args: Any) -> None:
        """Encode a frame with ``make_frame(*args)`` and hand it to the transport."""
        if self.connection.state is not WebSocketState.OPEN and self._closed.done():
            raise self._closed_error()
        try:
            data = make_frame(*args)
        except LocalProtocolError:
            if self.connection.state is not WebSocketState.OPEN:
                raise self._closed_error() from None
            raise
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport has paused writing (see pause_writing): at once, unless
        the peer does not read what we send.  Raises ConnectionClosed if TCP closes meanwhile."""
        if self._writing_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
            if self._closed.done():  # woken by connection_lost, not by resume_writing
                raise self._closed_error()

    # ---- opening and closing ---------------------------------------------------------------

    def start(self) -> None:
        """The opening handshake is done (the 101 is sent or received): start the session.

        Frames that arrived right behind the handshake are processed now, and the keepalive
        timer starts.
        """
        if self.ping_interval and self._keepalive_task is None:
            self._keepalive_task = asyncio.create_task(self._keepalive())
        self._process(self.connection.receive_data(b""))

    def _finish_tcp(self, failed: bool = False) -> None:
        """The WebSocket connection is CLOSED: §7.1.1, the server closes TCP first; the client
        waits ``close_timeout`` s for the server to do so, then closes itself.

        After a clean closing handshake the peer sends nothing more, and the server closes at
        once.  When *we* failed the connection (§7.1.7: 1002, 1007, 1009), the peer may still
        be sending: the server closes lingering (see :meth:`close_lingering`), so that our
        close frame reaches the peer instead of a connection reset.
        """
        if self.transport.is_closing():
            return
        if self.connection.role is Role.SERVER:
            if failed:
                self.close_lingering()
            else:
                self._close_transport()
        else:
            # Read on (the connection discards it) so that we see the server's EOF.
            self._resume_reading()
            self._timers.append(self._loop.call_later(self.close_timeout, self._close_transport))

    def close_lingering(self) -> None:
        """Close TCP after an error answer the way HTTP servers do, so that the answer arrives.

        Closing a socket whose receive buffer still holds bytes makes the kernel send a reset
        (RFC 1122 §4.2.2.13), and a reset can destroy our last bytes before the peer reads
        them: the peer would see "connection reset" instead of our close frame (or HTTP error).
        So: flush what we wrote, then shut down our sending side (a FIN after the answer); read
        on and discard everything the peer still sends, until it closes its side too (EOF), at
        most ``close_timeout`` seconds and :data:`LINGER_MAX_BYTES` bytes; then close.
        """
        transport = self.transport
        if transport.is_closing() or self._lingering:
            return
        if not transport.can_write_eof():  # (e.g. TLS): nothing better than a plain close
            self._close_transport()
            return
        self._lingering = True
        transport.write_eof()
        self._resume_reading()
        self._timers.append(self._loop.call_later(self.close_timeout, self._abort))

    def _close_transport(self) -> None:
        """Close TCP once the write buffer is flushed; abort if that takes ``close_timeout``."""
        if not self.transport.is_closing():
            self.transport.close()
            self._timers.append(self._loop.call_later(self.close_timeout, self._abort))

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def _keepalive(self) -> None:
        """Ping every ``ping_interval`` s; no pong within ``ping_timeout`` s fails with 1011."""
        assert self.ping_interval is not None
        try:
            while True:
                await asyncio.sleep(self.ping_interval)
                if self.connection.state is not WebSocketState.OPEN:
                    return
                try:
                    # The timeout runs from the moment we try to ping: a peer that reads
                    # nothing keeps our writes paused, so the ping itself never leaves.
                    async with asyncio.timeout(self.ping_timeout):
                        waiter = await self.ping()
                        if self.ping_timeout is not None:
                            await asyncio.shield(waiter)
                except TimeoutError:
                    logger.info("no pong within %s s: closing with 1011", self.ping_timeout)
                    self._fail_locally(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    return
                except ConnectionClosedError:
                    return
        except asyncio.CancelledError:
            pass

    def _fail_locally(self, code: int, reason: str) -> None:
        """Our side gives up (e.g. no pong): send a close frame if we still can, close TCP."""
        if self.connection.state is WebSocketState.OPEN:
            self.transport.write(self.connection.send_close(code, reason))
        self.close_code, self.close_reason = code, reason
        self._close_transport()  # flushes the close frame first
